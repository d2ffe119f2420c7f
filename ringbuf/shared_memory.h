// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// SharedMemory: a plain named POSIX shared-memory block, the C++ side of Python's
// shmlink.shared_memory.SharedMemory (and of the stdlib's multiprocessing one on Linux).
// No shmlink header: the object is exactly `size` bytes, its size is the file's size.
//
//   auto shm = SharedMemory::Create("/frames", 1 << 20);
//   if (!shm) { std::cerr << shm.error().message(); return; }
//   std::memcpy(shm->bytes().data(), pixels, n);
//   ...                                   // Python: SharedMemory("frames") sees the bytes
//   (void)shm->Unlink();                  // only this removes the name
//
// Attach("/frames") maps a block made by Create() in another process, or by Python's
// SharedMemory("frames", create=True, size=...).
//
// Names: Python's SharedMemory("frames") is the shm name "/frames" here (Python prepends
// the '/'; its .name leaves it off). The name rules are Segment's (segment.h): a leading
// '/', then 1..254 characters of [A-Za-z0-9._-], no further '/'; a Python name outside
// them (spaces, other characters) cannot be attached from C++ (kInvalidName).
//
// Ownership is Python's: only Unlink() removes the name, from whichever process calls it.
// Destroying a SharedMemory unmaps and closes it and never unlinks, neither for its
// creator nor for an attacher. (Python's SharedMemory also unlinks at interpreter exit
// what its process created and did not unlink; a C++ creator does not: call Unlink().)
// Unlinking leaves existing mappings valid; the memory is freed when the last one goes.
//
// Create() reserves the memory (posix_fallocate), so a full /dev/shm is ENOSPC there
// rather than SIGBUS on first touch. Nothing allocates after Create()/Attach() returns:
// bytes(), size(), name() and Unlink() are allocation-free.
//
// Thread safety: moving, assigning and destroying need one owner; the const calls
// (bytes(), size(), name(), Unlink()) may run concurrently from any thread. The bytes are
// not synchronised: like Python's .buf they are raw shared memory, so processes must
// agree on a protocol (atomics inside the block, a Ring, a lock) before racing on them.
// Trust boundary: any process of a uid allowed by the mode can map and write the block. A
// process that ftruncate()s it below the size mapped here makes later accesses SIGBUS
// (Python's SharedMemory never resizes an existing block).
#ifndef SHMLINK_RINGBUF_SHARED_MEMORY_H_
#define SHMLINK_RINGBUF_SHARED_MEMORY_H_

#include <sys/types.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <shmlink/expected.h>
#include <shmlink/ring_error.h>
#include <shmlink/segment.h>

namespace shmlink {

class SharedMemory {
 public:
  // Largest block Create() makes and Attach() maps (Segment's limit: 64 GiB).
  static constexpr size_t kMaxSize = Segment::kMaxSize;

  // Creates the block `name` of `size` zero bytes with file mode `mode` (exactly, despite
  // the umask), exclusively. Errors: kInvalidName; kInvalidArgument if size is 0 or more
  // than kMaxSize; EEXIST (system category, std::errc::file_exists) if the name exists,
  // whatever it names; ENOSPC if /dev/shm cannot hold it; other errno values of
  // shm_open/ftruncate/mmap. On error it leaves nothing behind under the name.
  [[nodiscard]] static Expected<SharedMemory> Create(std::string_view name, size_t size,
                                                     mode_t mode = 0600);

  // Attaches read-write to the existing block `name` and maps all of it; size() is the
  // file's size at this moment. Errors: kInvalidName; ENOENT if absent; EACCES;
  // kWrongKind if the name is not a regular file (FIFO, directory, symlink: never
  // blocks); kTruncated if its size is 0 (also the moment between a creator's shm_open
  // and its ftruncate: retry helps then); kInvalidArgument if larger than kMaxSize.
  [[nodiscard]] static Expected<SharedMemory> Attach(std::string_view name);

  // Move-only. A moved-from SharedMemory holds nothing (bytes() empty, Unlink() is
  // kBadState); assign to it or destroy it.
  SharedMemory(SharedMemory&& other) noexcept = default;
  SharedMemory& operator=(SharedMemory&& other) noexcept = default;
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  // Unmaps and closes. Never unlinks (see the file comment).
  ~SharedMemory() = default;

  // The whole block, size() bytes.
  std::span<std::byte> bytes() noexcept { return {segment_.data(), segment_.size()}; }
  std::span<const std::byte> bytes() const noexcept { return {segment_.data(), segment_.size()}; }
  size_t size() const noexcept { return segment_.size(); }
  // The shm name as given to Create()/Attach(), with its leading '/'.
  const std::string& name() const noexcept { return segment_.name(); }

  // Removes the name if it still refers to this block (a block re-created under the name
  // by someone else since is left alone); mappings, this one included, stay valid.
  // Errors: ENOENT if the name no longer refers to this block (already unlinked, here or
  // elsewhere: as Python's unlink() raising FileNotFoundError), kBadState if moved-from,
  // other errno values of the unlink.
  [[nodiscard]] Expected<void> Unlink() const;

 private:
  explicit SharedMemory(Segment segment) noexcept : segment_(std::move(segment)) {}

  Segment segment_;  // UnlinkPolicy::kKeep always
};

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_SHARED_MEMORY_H_
