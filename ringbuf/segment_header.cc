// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <cstring>
#include <new>

#include <shmlink/process_identity.h>
#include <shmlink/segment_header.h>

namespace shmlink {

const char* SegmentKindName(uint32_t kind) noexcept {
  switch (static_cast<SegmentKind>(kind)) {
    case SegmentKind::kSpscRing:
      return "spsc-ring";
    case SegmentKind::kConnection:
      return "connection";
    case SegmentKind::kMpmcQueue:
      return "mpmc-queue";
    case SegmentKind::kSharedObject:
      return "shared-object";
    case SegmentKind::kTopic:
      return "topic";
  }
  return "unknown";
}

uint64_t HeaderChecksum(const void* header_bytes) noexcept {
  // FNV-1a 64: detects corruption, not tampering (the trust boundary is the file mode).
  const auto* p = static_cast<const unsigned char*>(header_bytes);
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < offsetof(SegmentHeader, checksum); ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

void WriteHeader(std::byte* base, SegmentKind kind, uint64_t total_size,
                 const uint64_t (&geometry)[8]) noexcept {
  auto* h = new (base) SegmentHeader{};
  h->magic = kSegmentMagic;
  h->version = kLayoutVersion;
  h->kind = static_cast<uint32_t>(kind);
  h->header_size = sizeof(SegmentHeader);
  h->flags = 0;
  h->total_size = total_size;
  // Only names the creator (stale-segment checks): if our start time cannot be read now,
  // "this pid, start unknown", which is never taken for dead while the pid exists.
  h->creator = SelfIdentityOrPidOnly();
  std::memcpy(h->geometry, geometry, sizeof(h->geometry));
  h->checksum = HeaderChecksum(h);
  h->ready.store(0, std::memory_order_relaxed);  // not visible to anyone until Publish
}

void PublishHeader(std::byte* base) noexcept {
  auto* h = std::launder(reinterpret_cast<SegmentHeader*>(base));
  // SYNC(ready): release; everything the creator initialised happens-before an attacher's
  // acquire load of `ready` in ValidateHeader.
  h->ready.store(kReadyMark, std::memory_order_release);
}

Expected<HeaderFields> ValidateHeader(const std::byte* base, size_t mapped_size,
                                      SegmentKind expected_kind) noexcept {
  if (base == nullptr || mapped_size < sizeof(SegmentHeader)) return RingErrc::kTruncated;
  const auto* live = reinterpret_cast<const SegmentHeader*>(base);
  // SYNC(ready): acquire, pairs with PublishHeader.
  const uint32_t ready = live->ready.load(std::memory_order_acquire);
  // Snapshot the checksummed bytes once; all checks below read the snapshot.
  unsigned char snap[offsetof(SegmentHeader, checksum) + sizeof(uint64_t)];
  std::memcpy(snap, base, sizeof(snap));
  SegmentHeader h;
  std::memcpy(static_cast<void*>(&h), snap, sizeof(snap));

  if (h.magic == 0 && ready != kReadyMark) return RingErrc::kNotReady;
  if (h.magic != kSegmentMagic) return RingErrc::kBadMagic;
  if (ready != kReadyMark) return RingErrc::kNotReady;
  if (h.version != kLayoutVersion) return RingErrc::kBadVersion;
  if (h.checksum != HeaderChecksum(snap)) return RingErrc::kBadChecksum;
  if (h.kind != static_cast<uint32_t>(expected_kind)) return RingErrc::kWrongKind;
  if (h.header_size != sizeof(SegmentHeader) || h.flags != 0) return RingErrc::kBadGeometry;
  if (h.total_size > mapped_size) return RingErrc::kTruncated;
  if (h.total_size < mapped_size) return RingErrc::kBadGeometry;
  HeaderFields f{};
  f.kind = h.kind;
  f.total_size = h.total_size;
  f.creator = h.creator;
  std::memcpy(f.geometry, h.geometry, sizeof(f.geometry));
  return f;
}

}  // namespace shmlink
