// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Shared-memory layout of a Topic (segment kind kTopic): one publisher, many subscribers,
// a single-writer log of variable-size records that every subscriber reads in place.
//
//   +------------------------+ 0
//   | SegmentHeader          |  256 B; geometry[] (all fixed at creation, checksummed):
//   |                        |   [0] capacity (log bytes, power of two)
//   |                        |   [1] max_message_size
//   |                        |   [2] max_subscribers | policy << 32
//   |                        |   [3] history (K)
//   |                        |   [4] type_size | type_align << 32   (0: untyped topic)
//   |                        |   [5] type_hash                       (0: untyped topic)
//   |                        |   [6] slots_offset   [7] data_offset
//   +------------------------+ 256
//   | TopicControl           |  6 lines of 128 B (one writer per line, see below)
//   +------------------------+ slots_offset = 1024
//   | TopicSlot x max_subs   |  128 B each: one subscriber's position and owner
//   +------------------------+ data_offset (4096-aligned)
//   | log                    |  capacity bytes
//   +------------------------+ total_size = data_offset + capacity
//
// Positions are monotonic 64-bit byte counts into the log (index = pos & (capacity - 1));
// sequences count messages from 0. Records are 16-byte aligned (so payloads are too) and
// never straddle the end of the log: a padding record fills a too-short tail.
//
//   record:  0                   8                  12                 16
//            +-------------------+-------------------+-------------------+----------
//            | seq word (atomic) | payload length    | 0 (reserved)      | payload ...
//            +-------------------+-------------------+-------------------+----------
//   seq word: bits 63..62 kind, bits 61..0 sequence
//     kind 1 data     the message with that sequence
//     kind 2 padding  fills the log's tail; `sequence` is that of the next message (at 0)
//     kind 3 end      the terminator: nothing published here yet; `sequence` is the next
//     kind 0          never written (fresh memory)
//
// Invariants kept by the publisher:
//  - head <= tail, both 16-aligned, tail - head <= capacity. Every record in [head, tail)
//    is intact and its seq word carries its sequence; the slot at `tail` is the terminator
//    (end, next sequence) until the next publication replaces it.
//  - Bytes below `head` may be overwritten. The publisher stores `head` BEFORE it writes
//    over any byte below it (overwrite policy: that store is the seqlock of every record).
//  - Block policy: `head` is the publisher's announcement "subscribers joining from now on
//    start at or after head"; it overwrites below min(head, every live subscriber's
//    position) only (see topic_publisher.cc for the handshake with joining subscribers).
//
// TopicControl lines:
//   0 publisher: tail_pos, tail_seq (published end; for successors, joiners, stats), closed
//   1 publisher: head_pos (reclaim horizon / announcement)
//   2 role:      publisher_owner (packed ProcessIdentity), publisher_epoch (takeovers)
//   3 waits:     data_event (subscribers sleep, publisher notifies)
//   4 waits:     space_event (block policy: publisher sleeps, subscribers notify)
//   5 joiners:   slots_high_water (slots [0, hw) were ever claimed; the publisher scans
//                only those), subscriber_count (live subscribers, for statistics)
#ifndef SHMLINK_RINGBUF_TOPIC_LAYOUT_H_
#define SHMLINK_RINGBUF_TOPIC_LAYOUT_H_

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "ringbuf/event_count.h"
#include "ringbuf/expected.h"
#include "ringbuf/segment.h"
#include "ringbuf/segment_header.h"

namespace shmlink {

enum class TopicPolicy : uint32_t {
  kBlock = 1,      // the publisher waits (with timeout) for the slowest live subscriber
  kOverwrite = 2,  // the publisher never waits; lapped subscribers get kOverrun
};

inline constexpr uint64_t kTopicRecordAlign = 16;
inline constexpr uint64_t kTopicRecordHeaderSize = 16;
inline constexpr uint64_t kTopicMinCapacity = 4096;
inline constexpr uint64_t kTopicMaxCapacity = uint64_t{1} << 36;  // 64 GiB (segment limit)
inline constexpr uint32_t kTopicMinSubscribers = 1;
inline constexpr uint32_t kTopicMaxSubscribers = 4096;
inline constexpr uint64_t kTopicSlotsOffset = 1024;
inline constexpr uint64_t kTopicMaxHistory = 65536;       // and at most capacity / 16
inline constexpr uint64_t kTopicFreeSlot = ~uint64_t{0};  // TopicSlot::pos of a free slot

inline constexpr uint64_t kTopicKindData = 1;
inline constexpr uint64_t kTopicKindPadding = 2;
inline constexpr uint64_t kTopicKindEnd = 3;
inline constexpr uint64_t kTopicSeqMask = (uint64_t{1} << 62) - 1;

inline constexpr uint64_t TopicWord(uint64_t kind, uint64_t seq) noexcept {
  return (kind << 62) | (seq & kTopicSeqMask);
}
inline constexpr uint64_t TopicWordKind(uint64_t word) noexcept { return word >> 62; }
inline constexpr uint64_t TopicWordSeq(uint64_t word) noexcept { return word & kTopicSeqMask; }
inline constexpr uint64_t TopicRecordSize(uint64_t payload) noexcept {
  return (kTopicRecordHeaderSize + payload + kTopicRecordAlign - 1) & ~(kTopicRecordAlign - 1);
}
// Largest message: a record plus the padding before it plus the terminator after it must
// fit with the previous record still intact (so `head` never has to pass `tail`).
inline constexpr uint64_t TopicMaxMessageSizeLimit(uint64_t capacity) noexcept {
  return capacity / 4 - kTopicRecordHeaderSize;
}

struct TopicControl {
  // Line 0, publisher. SYNC labels: see topic_publisher.cc.
  alignas(128) std::atomic<uint64_t> tail_pos{0};
  std::atomic<uint64_t> tail_seq{0};
  std::atomic<uint32_t> closed{0};
  // Line 1, publisher.
  alignas(128) std::atomic<uint64_t> head_pos{0};
  // Line 2, role.
  alignas(128) std::atomic<uint64_t> publisher_owner{0};
  std::atomic<uint64_t> publisher_epoch{0};
  // Line 3.
  alignas(128) EventCount data_event;
  // Line 4.
  alignas(128) EventCount space_event;
  // Line 5, subscribers joining/leaving.
  alignas(128) std::atomic<uint32_t> slots_high_water{0};
  std::atomic<uint32_t> subscriber_count{0};
};
static_assert(sizeof(TopicControl) == 768);
static_assert(offsetof(TopicControl, head_pos) == 128);
static_assert(offsetof(TopicControl, publisher_owner) == 256);
static_assert(offsetof(TopicControl, data_event) == 384);
static_assert(offsetof(TopicControl, space_event) == 512);
static_assert(offsetof(TopicControl, slots_high_water) == 640);
static_assert(sizeof(SegmentHeader) + sizeof(TopicControl) == kTopicSlotsOffset);
static_assert(std::is_standard_layout_v<TopicControl>);

// One subscriber: written by its subscriber (pos), scanned by the publisher's slow path.
struct TopicSlot {
  alignas(128) std::atomic<uint64_t> pos{kTopicFreeSlot};  // next unreleased record
  std::atomic<uint64_t> owner{0};                          // packed ProcessIdentity, 0: free
  std::atomic<uint64_t> seq{0};                            // next sequence (statistics)
};
static_assert(sizeof(TopicSlot) == 128);
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::is_standard_layout_v<TopicSlot>);

struct TopicGeometry {
  uint64_t capacity = 0;
  uint64_t max_message_size = 0;
  uint32_t max_subscribers = 0;
  TopicPolicy policy = TopicPolicy::kBlock;
  uint64_t history = 0;
  uint32_t type_size = 0;
  uint32_t type_align = 0;
  uint64_t type_hash = 0;
  uint64_t slots_offset = 0;
  uint64_t data_offset = 0;
  uint64_t total_size = 0;
  uint64_t creator = 0;
};

// Pointers into one mapped topic segment (derived from a validated geometry).
struct TopicRegion {
  TopicControl* control = nullptr;
  TopicSlot* slots = nullptr;
  std::byte* data = nullptr;
  TopicGeometry geometry;
};

// Checks the creation parameters (capacity a power of two in [4 KiB, 64 GiB]; message size
// in [1, capacity/4 - 16]; subscribers in [1, 4096]; history <= min(65536, capacity/16);
// policy known; type size <= max
// message size and alignment a power of two <= 16, or both 0) and returns the segment size.
[[nodiscard]] Expected<uint64_t> TopicSegmentSize(const TopicGeometry& g);

// Initialises a freshly created, zero-filled segment (the terminator at position 0, every
// slot free) and publishes its header.
void InitTopicSegment(const Segment& seg, const TopicGeometry& g);

// Validates header and geometry of an attached segment against its mapped size. Errors:
// those of ValidateHeader, kBadGeometry for any inconsistent field.
[[nodiscard]] Expected<TopicGeometry> ValidateTopicSegment(const Segment& seg);

TopicRegion TopicRegionOf(const Segment& seg, const TopicGeometry& g);

// The seq word of the record at log index `idx` (16-aligned).
inline std::atomic_ref<uint64_t> TopicSeqWord(std::byte* data, uint64_t idx) noexcept {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(data + idx));
}
// The length word of the record at log index `idx`.
inline std::atomic_ref<uint32_t> TopicLengthWord(std::byte* data, uint64_t idx) noexcept {
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(data + idx + 8));
}

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_TOPIC_LAYOUT_H_
