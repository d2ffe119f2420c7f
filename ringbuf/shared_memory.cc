// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <cerrno>
#include <utility>

#include <shmlink/shared_memory.h>

namespace shmlink {

Expected<SharedMemory> SharedMemory::Create(std::string_view name, size_t size, mode_t mode) {
  auto seg = Segment::Create(name, size, UnlinkPolicy::kKeep, mode);
  if (!seg) return MakeUnexpected(seg.error());
  return SharedMemory(std::move(*seg));
}

Expected<SharedMemory> SharedMemory::Attach(std::string_view name) {
  auto seg = Segment::Open(name, UnlinkPolicy::kKeep);
  if (!seg) return MakeUnexpected(seg.error());
  return SharedMemory(std::move(*seg));
}

Expected<void> SharedMemory::Unlink() const {
  if (segment_.fd() < 0) return RingErrc::kBadState;
  auto removed = UnlinkShmIfSame(segment_.name(), segment_.fd());
  if (!removed) return MakeUnexpected(removed.error());
  if (!*removed) return ErrnoError(ENOENT);
  return {};
}

}  // namespace shmlink
