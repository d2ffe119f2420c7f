// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Shared-memory layout of an MpmcQueue (segment kind kMpmcQueue).
//
//   +----------------------+ 0
//   | SegmentHeader        |  256 B; geometry[] = {slot_count, max_message_size, slot_stride,
//   +----------------------+ 256    control_offset, registry_offset, registry_size,
//   | MpmcControl          |  512 B  slots_offset, stats_offset}
//   +----------------------+ 768 (registry_offset)
//   | MpmcRegistryEntry    |  64 B each, kMpmcRegistrySize of them: one per live handle
//   |   x 256              |  (MpmcProducer / MpmcConsumer), owner = packed ProcessIdentity
//   +----------------------+ stats_offset (layout version 3)
//   | MpmcHandleStats      |  128 B each, one per registry entry: the counters of the
//   |   x 256              |  handles that held that entry (role_stats.h)
//   +----------------------+ slots_offset (4096-aligned)
//   | slot 0               |  slot_stride bytes each (16-byte MpmcSlotHeader + payload,
//   | slot 1 ...           |  rounded up to 64)
//   +----------------------+ total_size = slots_offset + slot_count * slot_stride
//
// Positions (`*_pos`) are monotonic counters of claims; slot index = pos & (slot_count-1).
// Each slot's 64-bit `stamp` is the single source of truth of that slot's state:
//
//    63                                      10 9              2 1   0
//   +------------------------------------------+----------------+-----+
//   |          position (54 bits)              |  handle index  |state|
//   +------------------------------------------+----------------+-----+
//
//   state kSlotFree      (pos, 0)        a producer may claim position `pos` here
//         kSlotClaimed   (pos, producer) the producer with registry index `idx` is writing
//         kSlotPublished (pos, 0 | skip) committed message (idx 0) or a skip record (idx 1:
//                                        the claim was aborted or its producer died)
//         kSlotReading   (pos, consumer) consumer `idx` holds the message; idx
//                                        kMpmcOrphanIdx: its consumer died, awaiting
//                                        redelivery to another consumer
//   Life of one slot: Free(p) -> Claimed(p,i) -> Published(p) -> Reading(p,j) -> Free(p+N).
//
// Because the claiming CAS writes the claimant's registry index into the stamp, there is
// no window in which a slot is claimed but its owner unknown: a dead owner is found by
// reading registry[idx].owner (pid + start time) and its slots by scanning stamps.
//
// Positions have 54 bits: ~5.7 years at 100 M messages/s before they wrap (unsupported).
#ifndef SHMLINK_RINGBUF_MPMC_LAYOUT_H_
#define SHMLINK_RINGBUF_MPMC_LAYOUT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <shmlink/event_count.h>
#include <shmlink/expected.h>
#include <shmlink/role_stats.h>
#include <shmlink/segment.h>
#include <shmlink/segment_header.h>

namespace shmlink {

inline constexpr uint32_t kMpmcRegistrySize = 256;
inline constexpr uint32_t kMpmcOrphanIdx = 255;   // stamp idx of an orphaned message
inline constexpr uint32_t kMpmcMaxHandles = 255;  // registry entries 0..254
inline constexpr uint64_t kMpmcMinSlots = 2;
inline constexpr uint64_t kMpmcMaxSlots = uint64_t{1} << 24;
inline constexpr uint64_t kMpmcMaxMessageSize = uint64_t{1} << 28;  // 256 MiB per slot
inline constexpr uint64_t kMpmcSlotHeaderSize = 16;

inline constexpr int kStampIdxShift = 2;
inline constexpr int kStampPosShift = 10;
inline constexpr uint64_t kStampPosMask = (uint64_t{1} << (64 - kStampPosShift)) - 1;

enum : uint64_t { kSlotFree = 0, kSlotClaimed = 1, kSlotPublished = 2, kSlotReading = 3 };
inline constexpr uint32_t kPublishedData = 0;
inline constexpr uint32_t kPublishedSkip = 1;

inline constexpr uint64_t MakeStamp(uint64_t pos, uint32_t idx, uint64_t state) noexcept {
  return ((pos & kStampPosMask) << kStampPosShift) | (uint64_t{idx & 0xff} << kStampIdxShift) |
         state;
}
inline constexpr uint64_t StampPos(uint64_t stamp) noexcept { return stamp >> kStampPosShift; }
inline constexpr uint32_t StampIdx(uint64_t stamp) noexcept {
  return static_cast<uint32_t>((stamp >> kStampIdxShift) & 0xff);
}
inline constexpr uint64_t StampState(uint64_t stamp) noexcept { return stamp & 3; }

// Slot flags (MpmcSlotHeader::flags), written by the producer before it publishes.
// Segments created before flags existed hold 0 there (zero-filled), which means none.
inline constexpr uint32_t kMpmcSlotFlagRedelivered = 1;  // relayed message that may have
                                                         // been delivered before (bridge)

struct MpmcSlotHeader {
  std::atomic<uint64_t> stamp;  // see the file comment
  uint32_t length;              // payload bytes; written by the claimant before publishing
  uint32_t flags;               // kMpmcSlotFlag*; written by the claimant before publishing
};
static_assert(sizeof(MpmcSlotHeader) == kMpmcSlotHeaderSize);

// One writer class per 128-byte line.
struct MpmcControl {
  // Line 0: producers' claim counter (a hint: may lag the stamps by one, helped forward).
  alignas(128) std::atomic<uint64_t> enqueue_pos{0};
  // Line 1: consumers' claim counter (same rule).
  alignas(128) std::atomic<uint64_t> dequeue_pos{0};
  // Line 2: sleepers announce themselves here.
  alignas(128) EventCount not_empty;  // consumers wait, producers notify
  EventCount not_full;                // producers wait, consumers notify
  // Line 3: slow-path counters, written only on aborts, crashes and recovery.
  alignas(128) std::atomic<uint64_t> abandoned{0};  // claims turned into skip records
  std::atomic<uint64_t> redelivered{0};             // orphaned messages re-delivered
  std::atomic<int64_t> orphans{0};                  // orphaned messages not yet adopted
  std::atomic<uint64_t> recoveries{0};              // dead handles recovered (registry entries)
};
static_assert(sizeof(MpmcControl) == 512);
static_assert(offsetof(MpmcControl, dequeue_pos) == 128);
static_assert(offsetof(MpmcControl, not_empty) == 256);
static_assert(offsetof(MpmcControl, abandoned) == 384);
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::is_standard_layout_v<MpmcControl>);

enum : uint32_t { kRoleNone = 0, kRoleProducer = 1, kRoleConsumer = 2 };

struct MpmcRegistryEntry {
  alignas(64) std::atomic<uint64_t> owner{0};  // packed ProcessIdentity, 0 = free
  std::atomic<uint32_t> role{kRoleNone};
};
static_assert(sizeof(MpmcRegistryEntry) == 64);

// Counters of registry entry i, written only by the handle that holds entry i (one writer
// per 128-byte block): by_role[0] while it is a producer, by_role[1] while a consumer.
struct MpmcHandleStats {
  alignas(128) RoleStats by_role[2];
};
static_assert(sizeof(MpmcHandleStats) == 128);
inline constexpr uint32_t RoleStatsIndex(uint32_t role) noexcept {
  return role == kRoleConsumer ? 1 : 0;
}

struct MpmcGeometry {
  uint64_t slot_count = 0;
  uint64_t max_message_size = 0;
  uint64_t slot_stride = 0;
  uint64_t control_offset = 0;
  uint64_t registry_offset = 0;
  uint64_t slots_offset = 0;
  uint64_t stats_offset = 0;
  uint64_t total_size = 0;
  uint64_t creator = 0;
};

// Pointers into one mapped queue segment (derived from a validated MpmcGeometry).
struct MpmcView {
  MpmcControl* control = nullptr;
  MpmcRegistryEntry* registry = nullptr;
  MpmcHandleStats* stats = nullptr;  // kMpmcRegistrySize entries, parallel to registry
  std::byte* slots = nullptr;
  uint64_t slot_count = 0;
  uint64_t mask = 0;
  uint64_t stride = 0;
  uint64_t max_message_size = 0;

  MpmcSlotHeader* slot(uint64_t pos) const noexcept {
    return reinterpret_cast<MpmcSlotHeader*>(slots + (pos & mask) * stride);
  }
  std::byte* payload(uint64_t pos) const noexcept {
    return slots + (pos & mask) * stride + kMpmcSlotHeaderSize;
  }
};

inline constexpr uint64_t MpmcSlotStride(uint64_t max_message_size) noexcept {
  return AlignUp(kMpmcSlotHeaderSize + max_message_size, 64);
}

// Segment size for `slot_count` slots (power of two in [kMpmcMinSlots, kMpmcMaxSlots]) of
// `max_message_size` bytes (1..kMpmcMaxMessageSize). kInvalidArgument otherwise.
[[nodiscard]] Expected<uint64_t> MpmcSegmentSize(uint64_t slot_count, uint64_t max_message_size);

// Initialises a freshly created, zero-filled segment and publishes its header.
void InitMpmcSegment(const Segment& seg, uint64_t slot_count, uint64_t max_message_size);

// Validates header and geometry of an attached segment against its mapped size:
// kWrongKind for another kind, kBadGeometry for inconsistent fields, the header's errors.
[[nodiscard]] Expected<MpmcGeometry> ValidateMpmcSegment(const Segment& seg);

MpmcView MpmcViewOf(const Segment& seg, const MpmcGeometry& g);

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_MPMC_LAYOUT_H_
