// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// SegmentHeader: the self-describing first 256 bytes of every shmlink segment.
//
//   offset  size  field
//   0       8     magic            "SHMLINK\0" (kSegmentMagic)
//   8       4     version          kLayoutVersion; bumped on any layout change
//   12      4     kind             SegmentKind
//   16      4     header_size      sizeof(SegmentHeader) == 256
//   20      4     flags            0 (reserved)
//   24      8     total_size       bytes of the whole segment == file size
//   32      8     creator          packed ProcessIdentity (pid + start time) of the creator
//   40      64    geometry[8]      kind-specific sizes and offsets (see each kind's layout)
//   104     136   reserved         zero
//   240     8     checksum         FNV-1a 64 of bytes [0, 240)
//   248     4     ready            kReadyMark once the creator finished initialising
//   252     4     padding
//
// Creation is two-phase: the creator writes every field, then release-stores `ready`.
// ValidateHeader() checks all of it against the real mapped size before anything else in
// the segment is touched, and returns a *copy*: callers derive geometry from that copy, so
// a peer rewriting the header after validation cannot move their bounds.
#ifndef SHMLINK_RINGBUF_SEGMENT_HEADER_H_
#define SHMLINK_RINGBUF_SEGMENT_HEADER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include <shmlink/expected.h>
#include <shmlink/ring_error.h>

namespace shmlink {

inline constexpr uint64_t kSegmentMagic = 0x004b4e494c4d4853ull;  // "SHMLINK\0" little-endian
// 2: SPSC header word is the commit word. 3: per-role counters (RoleStats) in SPSC control
// lines 0/1 and an MPMC per-handle counter array (geometry[7]). 4: SPSC roles (and the
// creator of a named ring or connection segment) are held as HolderLock slots
// (holder_lock.h, spsc_layout.h); an older library would take a live holder's role over
// on pid + start time alone, so it must not attach.
inline constexpr uint32_t kLayoutVersion = 4;
inline constexpr uint32_t kReadyMark = 0x52454459;  // "YDER"

enum class SegmentKind : uint32_t {
  kSpscRing = 1,      // one SpscRing
  kConnection = 2,    // two SpscRings, one per direction (transport/)
  kMpmcQueue = 3,     // MpmcQueue
  kSharedObject = 4,  // SharedObject (Value/Array + robust lock)
  kTopic = 5,         // Topic (one publisher, many subscribers; topic_layout.h)
};

const char* SegmentKindName(uint32_t kind) noexcept;

struct SegmentHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t kind;
  uint32_t header_size;
  uint32_t flags;
  uint64_t total_size;
  uint64_t creator;
  uint64_t geometry[8];
  uint8_t reserved[136];
  uint64_t checksum;
  std::atomic<uint32_t> ready;
  uint32_t padding;
};

static_assert(sizeof(SegmentHeader) == 256);
static_assert(offsetof(SegmentHeader, geometry) == 40);
static_assert(offsetof(SegmentHeader, checksum) == 240);
static_assert(offsetof(SegmentHeader, ready) == 248);
static_assert(std::atomic<uint32_t>::is_always_lock_free);

// Plain copy of the validated fields (no atomics), as returned by ValidateHeader.
struct HeaderFields {
  uint32_t kind;
  uint64_t total_size;
  uint64_t creator;
  uint64_t geometry[8];
};

// Checksum over bytes [0, offsetof(checksum)).
uint64_t HeaderChecksum(const void* header_bytes) noexcept;

// Writes a complete header (not yet ready) at `base`. The caller initialises the rest of
// the segment, then calls PublishHeader().
void WriteHeader(std::byte* base, SegmentKind kind, uint64_t total_size,
                 const uint64_t (&geometry)[8]) noexcept;
// Marks the segment ready (release store; SYNC(ready): pairs with ValidateHeader's acquire).
void PublishHeader(std::byte* base) noexcept;

// Validates the header at `base` of a mapping of `mapped_size` bytes:
//  kTruncated     mapped_size < 256, or total_size > mapped_size
//  kNotReady      all-zero magic or `ready` not set (creator still initialising)
//  kBadMagic / kBadVersion / kWrongKind / kBadChecksum
//  kBadGeometry   header_size != 256, total_size < mapped_size, non-zero flags
[[nodiscard]] Expected<HeaderFields> ValidateHeader(const std::byte* base, size_t mapped_size,
                                                    SegmentKind expected_kind) noexcept;

// Overflow-checked helpers for geometry validation.
inline bool AddOverflows(uint64_t a, uint64_t b, uint64_t* out) noexcept {
  return __builtin_add_overflow(a, b, out);
}
inline bool MulOverflows(uint64_t a, uint64_t b, uint64_t* out) noexcept {
  return __builtin_mul_overflow(a, b, out);
}
inline constexpr uint64_t AlignUp(uint64_t v, uint64_t a) noexcept {
  return (v + a - 1) & ~(a - 1);
}

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_SEGMENT_HEADER_H_
