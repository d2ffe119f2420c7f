// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Shared-memory layout of SPSC rings (kinds kSpscRing: one ring, kConnection: two).
//
//   +-------------------+ 0
//   | SegmentHeader     |   256 B, geometry[] = {ring_count, capacity, control_offset,
//   +-------------------+ 256                   control_stride, data_offset, 0, 0, 0}
//   | SpscControl x N   |   512 B each: four 128-byte lines (see below); lines 0 and 1
//   |                   |   also hold each side's counters (RoleStats, layout version 3)
//   |                   |   line 3 the role holders' names and claim counts (version 4)
//   +-------------------+ data_offset (4096-aligned)
//   | data ring 0       |   capacity bytes (power of two)
//   | data ring 1 ...   |
//   +-------------------+ total_size = data_offset + N * capacity
//
// Positions (`*_pos`) are monotonic 64-bit byte counts; an index is pos & (capacity - 1).
// The data region holds 8-byte-aligned records; the first 8 bytes are one 64-bit header
// word (little-endian, so also readable as the struct RecordHeader below):
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                      payload length (bytes)                   |
//   +---------------------------------------------------------------+
//   |     record type (kRecordData | kRecordPadding | kRecordClose)  |
//   +---------------------------------------------------------------+
//   |           payload ... padded with zeros to 8 bytes           ...
//
// Publication rule (layout version 2): the header word IS the commit word. The consumer
// polls the header at its own position (so its first miss brings the header and the start
// of the payload together) and never reads write_pos. A header word of 0 means "nothing
// published here yet". The producer keeps this invariant:
//   the 8-byte slot at the published end of the stream holds 0 (the terminator),
// by zeroing the slot after each record it reserves before the release store that
// publishes the batch. The consumer therefore only ever reads, at its position, either the
// terminator or a header published after it - never stale bytes of an earlier lap (old
// headers or payload that happens to look like one). One consequence: the producer must
// never fill the ring completely (the terminator slot must lie outside the consumer's
// unreleased bytes), so records occupy at most capacity - 8 bytes at a time.
// kRecordClose at the published end is the producer's end-of-stream mark (length 0).
// write_pos is still stored after every commit: for a producer that takes the role over
// (it resumes there), for size_bytes(), and for corruption checks on the producer side.
// A record whose header word was published is committed, whatever happened to write_pos:
// the consumer may already have read it (and released it, so read_pos may pass write_pos
// when a producer died between the two stores). A producer taking the role over keeps
// such records and resumes at the true end of the stream: it follows the published
// headers from max(write_pos, read_pos) to the terminator (SpscProducer, spsc_ring.cc).
// A record never straddles the end of the data region: when the tail is too short, a
// padding record fills it and the message starts at index 0. Hence the largest message is
// capacity/2 - 8 bytes (it must fit even when the free space is split by the wrap point).
#ifndef SHMLINK_RINGBUF_SPSC_LAYOUT_H_
#define SHMLINK_RINGBUF_SPSC_LAYOUT_H_

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <shmlink/event_count.h>
#include <shmlink/expected.h>
#include <shmlink/role_stats.h>
#include <shmlink/segment.h>
#include <shmlink/segment_header.h>

namespace shmlink {

inline constexpr uint32_t kRecordData = 0x41544144;     // "DATA"
inline constexpr uint32_t kRecordPadding = 0x44444150;  // "PADD"
inline constexpr uint32_t kRecordClose = 0x534f4c43;    // "CLOS": end of stream
inline constexpr uint64_t kRecordAlign = 8;
inline constexpr uint64_t kRecordHeaderSize = 8;
inline constexpr uint64_t kSpscMinCapacity = 256;
inline constexpr uint64_t kSpscMaxCapacity = uint64_t{1} << 32;  // 4 GiB per ring

struct RecordHeader {
  uint32_t length;
  uint32_t type;
};
static_assert(sizeof(RecordHeader) == kRecordHeaderSize);
static_assert(std::endian::native == std::endian::little, "header word = {length, type}");

// The header as one 64-bit word (0: not yet published, the terminator).
inline constexpr uint64_t MakeRecordWord(uint32_t type, uint32_t length) noexcept {
  return (uint64_t{type} << 32) | length;
}
inline constexpr uint32_t RecordWordType(uint64_t word) noexcept {
  return static_cast<uint32_t>(word >> 32);
}
inline constexpr uint32_t RecordWordLength(uint64_t word) noexcept {
  return static_cast<uint32_t>(word);
}

inline constexpr uint64_t RecordSize(uint64_t payload) noexcept {
  return (kRecordHeaderSize + payload + kRecordAlign - 1) & ~(kRecordAlign - 1);
}
inline constexpr uint64_t SpscMaxMessageSize(uint64_t capacity) noexcept {
  return capacity / 2 - kRecordHeaderSize;
}

// One writer per 128-byte line (two cache lines: guards against adjacent-line prefetch).
struct SpscControl {
  // Line 0, written by the producer; not read by the consumer's fast path.
  alignas(128) std::atomic<uint64_t> write_pos{0};  // end of the last commit
  std::atomic<uint32_t> writer_closed{0};           // end of stream marked by the producer
  RoleStats producer_stats;                         // counters (role_stats.h), same line
  // Line 1, written by the consumer.
  alignas(128) std::atomic<uint64_t> read_pos{0};
  std::atomic<uint32_t> reader_closed{0};  // the consumer left for good
  RoleStats consumer_stats;                // counters (role_stats.h), same line
  // Line 2, slow path only: sleepers announce themselves here.
  alignas(128) EventCount data_event;  // consumer waits for data, producer notifies
  EventCount space_event;              // producer waits for space, consumer notifies
  // Line 3, role ownership. The holder of a role holds its HolderLock slot (see
  // SpscProducerHolderSlot below): the lock decides who holds the role and whether the
  // holder lives. The owner words name the holder (packed ProcessIdentity, 0: nobody), for
  // tools and to tell "died" (lock free, name still set) from "left" (a holder clears its
  // name before it drops its lock). The epochs count claims, so that a holder leaving and
  // claiming again while a peer checks its liveness is not taken for a death.
  alignas(128) std::atomic<uint64_t> producer_owner{0};
  std::atomic<uint64_t> consumer_owner{0};
  std::atomic<uint32_t> producer_epoch{0};
  std::atomic<uint32_t> consumer_epoch{0};
};
static_assert(sizeof(SpscControl) == 512);
static_assert(offsetof(SpscControl, producer_stats) == 16);
static_assert(offsetof(SpscControl, read_pos) == 128);
static_assert(offsetof(SpscControl, consumer_stats) == 144);
static_assert(offsetof(SpscControl, data_event) == 256);
static_assert(offsetof(SpscControl, producer_owner) == 384);
static_assert(offsetof(SpscControl, producer_epoch) == 400);
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::is_standard_layout_v<SpscControl>);

struct SpscGeometry {
  uint32_t ring_count;
  uint64_t capacity;
  uint64_t control_offset;
  uint64_t data_offset;
  uint64_t total_size;
  uint64_t creator;
};

// Where ring `i` lives in a mapped segment.
struct SpscRegion {
  SpscControl* control = nullptr;
  std::byte* data = nullptr;
  uint64_t capacity = 0;
  uint32_t index = 0;  // i: which ring of the segment (selects its holder-lock slots)
};

// HolderLock slots (holder_lock.h) of the roles of ring `ring` in an SPSC segment
// (kSpscRing: ring 0; kConnection: rings 0 and 1). The segment's creator (SpscRing::Create,
// a Connection's server side) holds kCreatorHolderSlot while it lives.
inline constexpr uint64_t SpscProducerHolderSlot(uint32_t ring) noexcept {
  return 2 * uint64_t{ring};
}
inline constexpr uint64_t SpscConsumerHolderSlot(uint32_t ring) noexcept {
  return 2 * uint64_t{ring} + 1;
}
// Number of role slots of a segment of `ring_count` rings (slots [0, count)).
inline constexpr uint64_t SpscRoleHolderSlots(uint32_t ring_count) noexcept {
  return 2 * uint64_t{ring_count};
}

enum class SpscRole { kProducer, kConsumer };

// True only on the kernel's evidence that the holder of `role` of ring `region` died (or
// exec'd) without leaving the role: its lock slot is free while its owner word still names
// the same holder of the same claim. Alive, never claimed, left, or a probe that fails
// (unknown): false. Slow path (one fcntl); any-thread.
bool SpscRoleDied(const Segment& segment, const SpscRegion& region, SpscRole role) noexcept;

// True if nobody holds any role slot of the segment's `ring_count` rings nor its creator
// slot (kernel evidence: every holder died or left). Unknown counts as held. Slow path.
bool SpscSegmentUnheld(const Segment& segment, uint32_t ring_count) noexcept;

// Size of a segment holding `ring_count` rings of `capacity` bytes; kInvalidArgument if
// capacity is not a power of two in [kSpscMinCapacity, kSpscMaxCapacity].
[[nodiscard]] Expected<uint64_t> SpscSegmentSize(uint32_t ring_count, uint64_t capacity);

// Initialises a freshly created, zero-filled segment and publishes its header.
void InitSpscSegment(const Segment& seg, SegmentKind kind, uint32_t ring_count, uint64_t capacity);

// Validates header and geometry of an attached segment against its mapped size.
[[nodiscard]] Expected<SpscGeometry> ValidateSpscSegment(const Segment& seg, SegmentKind kind,
                                                         uint32_t ring_count);

SpscRegion SpscRegionAt(const Segment& seg, const SpscGeometry& g, uint32_t index);

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_SPSC_LAYOUT_H_
