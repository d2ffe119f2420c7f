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
//   |   x 256              |  (MpmcProducer / MpmcConsumer), held by HolderLock slot i
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
// no window in which a slot is claimed but its owner unknown: a dead owner's slots are
// found by scanning stamps for its index.
//
// LIVENESS (who holds registry entry i): the kernel says so, not /proc. The holder of entry
// i keeps an OFD lock on HolderLock slot i (holder_lock.h; i < kMpmcMaxHandles); the
// creator's MpmcQueue keeps kCreatorHolderSlot. The entry's owner word is written after the
// lock is taken and cleared before it is dropped, so "lock free, owner still set" means the
// holder died (or exec'd) without leaving, while "owner 0" means it left. Recovery of entry
// i runs only under its lock (so no registrant and no second recoverer works on the entry
// meanwhile) and only after ProbeHolder(i) said kDead with the owner word set; kUnknown
// recovers nothing. Why no "dying" nuance is needed: the kernel drops an OFD lock when the
// last reference to its open file description goes, i.e. when the last task sharing the
// holder's fd table runs exit_files() in do_exit(), after that task set PF_EXITING and
// released its mm (exit_mm() comes first); no task of the holder can return to user mode
// after that point, and the fork handler (holder_lock.cc) leaves no copy of the token in a
// child. So once the lock is seen free, the dead holder will never write a stamp again.
//
// A LIVE HANDLE JUDGED DEAD: the lock is also dropped if the token fd is closed behind the
// handle's back (a program that closes all its fds). Recovery then takes the entry's
// claims away while the handle still runs. Two rules keep that handle from ever completing
// an operation under somebody else's name (it gets RingErrc::kRevoked instead):
//  1. Generation. Each entry has a `generation`, bumped (seq_cst RMW) when the entry is
//     handed out and when it is recovered, before the recovery scans the stamps. A handle
//     remembers the generation it registered with and, right after each successful claim
//     CAS, re-loads it (seq_cst). In the single total order either that load follows the
//     recovery's bump (the handle sees it and gives the claim up itself: a producer's slot
//     becomes a skip record, a consumer's message an orphan), or the claim CAS precedes the
//     bump and therefore the scan's load of that stamp (the scan takes the claim away). So
//     no claim survives a recovery of its entry.
//  2. Quarantine (why a stale release can never succeed). A release/publish/abort is a CAS
//     that expects the exact stamp (p, i, state). Each position p is claimed fresh by one
//     producer and one consumer only once (positions are unique mod 2^54), so the only way
//     (p, i, Reading) can reappear after recovery orphaned it is the orphan at p being
//     adopted by a *later* holder of entry i; (p, i, Claimed) can never reappear (a skip
//     record is consumed, not re-claimed). Therefore a recovery that orphans messages at
//     positions p sets the entry's `quarantine_until` to max(p) + N + 1 (N = slot_count),
//     and the entry is not handed to a new handle while dequeue_pos < quarantine_until.
//     dequeue_pos >= p + N + 1 means a consumer claimed position p + N, which a producer
//     must have claimed before, which needs the slot's stamp Free(p + N), which only the
//     release of p writes: the orphan at p is gone, and stamps of that slot carry positions
//     > p from then on. So a stale handle's release of p fails, forever. Claims a stale
//     handle makes after the recovery are caught by rule 1, and by recovery of stray
//     stamps (a Claimed/Reading stamp naming an entry whose owner is 0 is taken away under
//     that entry's lock, as for a dead holder; this also unwedges a slot whose claimant
//     died while its entry was free). A revoked handle killed between its claim CAS and
//     its generation check leaves such a stray even when its index was handed out again
//     meanwhile: a registration of an entry that was ever recovered takes the strays
//     naming it away before the new holder can claim anything (under the entry's lock).
//     Left open: that kill racing the re-registration's own scan (the stray then waits
//     until the new holder leaves or dies).
//  A stale *producer* may still write into the payload span it was given (zero-copy spans
//  cannot be revoked); publish checks the stamp before it writes length/flags, so only a
//  write racing the recovery itself can land after the slot was reused (docs/mpmc.md).
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

// The queue's sleep/wake pair: an EventCount (event_count.h) whose sleepers are a SET of
// registry entries, one bit each, instead of a count. A sleeper killed inside its futex wait
// leaves its bit set until its entry is recovered, which clears it; a count stayed raised
// forever and made every later notifier load `seq` (and the first one call futex_wake).
// The set is exact because at most one thread sleeps per entry and event at a time (a
// handle is used by one thread at a time).
//
// Words: sleepers[0] bits 0..59 are entries 0..59 (registration hands out the lowest free
// entry, so a queue with up to 60 handles uses this word only); entries 60..254 are bits of
// sleepers[1..4], and bit 60 + k of sleepers[0] is a STICKY summary "sleepers[1 + k] may be
// non-zero", set by the first sleeper of that word and never cleared. So the notifier's
// fast path with no sleeper is one load of sleepers[0], as with the old count (measured: four
// loads per check cost +4.7 % on a push+pop loop).
//
// SYNC(event-count) as in event_count.h: the announce is a seq_cst RMW on the word the
// notifier loads (seq_cst) after publishing. For entries >= 60: if the notifier's load of
// sleepers[0] misses the summary bit, that load precedes the sleeper's summary RMW (or the
// bit was set before and is sticky), hence precedes its re-check, which then sees the
// publication; if it sees the bit, it loads the entry's word, and the usual argument applies.
struct alignas(64) MpmcEvent {
  static constexpr uint32_t kLowEntries = 60;
  static constexpr uint64_t kLowMask = (uint64_t{1} << kLowEntries) - 1;
  std::atomic<uint32_t> seq{0};  // futex word; low bit: armed by a sleeper
  uint32_t reserved = 0;
  std::atomic<uint64_t> sleepers[5] = {};  // see above

  // Word and bit of entry `idx`.
  static constexpr uint32_t Word(uint32_t idx) noexcept {
    return idx < kLowEntries ? 0 : 1 + (idx - kLowEntries) / 64;
  }
  static constexpr uint64_t Bit(uint32_t idx) noexcept {
    return uint64_t{1} << (idx < kLowEntries ? idx : (idx - kLowEntries) % 64);
  }
  // SYNC(event-count): seq_cst loads; one load when no entry >= 60 ever slept.
  bool HasSleepers() const noexcept {
    const uint64_t w0 = sleepers[0].load(std::memory_order_seq_cst);
    if ((w0 & kLowMask) != 0) return true;
    if ((w0 >> kLowEntries) == 0) return false;
    for (uint32_t k = 0; k < 4; ++k) {
      if ((w0 >> (kLowEntries + k) & 1) != 0 &&
          sleepers[1 + k].load(std::memory_order_seq_cst) != 0) {
        return true;
      }
    }
    return false;
  }
  // Notifier side, as EventCount::NotifyAll. True if it made a futex_wake call.
  bool NotifyAll() noexcept { return HasSleepers() && DisarmAndWake(seq); }
  // Waiter side (SYNC(event-count): seq_cst RMWs; the summary after the entry's bit).
  void Announce(uint32_t idx) noexcept {
    const uint32_t w = Word(idx);
    sleepers[w].fetch_or(Bit(idx), std::memory_order_seq_cst);
    if (w == 0) return;
    const uint64_t summary = uint64_t{1} << (kLowEntries + w - 1);
    // seq_cst load: the bit is sticky, so seeing it set is as good as setting it.
    if ((sleepers[0].load(std::memory_order_seq_cst) & summary) == 0) {
      sleepers[0].fetch_or(summary, std::memory_order_seq_cst);
    }
  }
  // Waiter side after its wait, and recovery of a dead entry (SYNC(event-count): seq_cst).
  void Retire(uint32_t idx) noexcept {
    sleepers[Word(idx)].fetch_and(~Bit(idx), std::memory_order_seq_cst);
  }
  uint32_t PrepareWait() noexcept { return seq.fetch_or(1, std::memory_order_seq_cst) | 1u; }
  // Number of announced sleepers (for tools and tests; relaxed: a snapshot).
  uint32_t SleeperCount() const noexcept {
    uint32_t n = static_cast<uint32_t>(
        __builtin_popcountll(sleepers[0].load(std::memory_order_relaxed) & kLowMask));
    for (uint32_t k = 1; k < 5; ++k) {
      n += static_cast<uint32_t>(__builtin_popcountll(sleepers[k].load(std::memory_order_relaxed)));
    }
    return n;
  }
};
static_assert(sizeof(MpmcEvent) == 64 && std::is_standard_layout_v<MpmcEvent>);
static_assert(MpmcEvent::Word(kMpmcMaxHandles - 1) == 4);

// BlockingWaitWith's waiter interface (event_count.h) for registry entry `idx`.
struct MpmcSleeper {
  MpmcEvent& event;
  uint32_t idx;
  void Announce() noexcept { event.Announce(idx); }
  void Retire() noexcept { event.Retire(idx); }
  uint32_t PrepareWait() noexcept { return event.PrepareWait(); }
  std::atomic<uint32_t>* Word() noexcept { return &event.seq; }
};

// One writer class per 128-byte line.
struct MpmcControl {
  // Line 0: producers' claim counter (a hint: may lag the stamps by one, helped forward).
  alignas(128) std::atomic<uint64_t> enqueue_pos{0};
  // Line 1: consumers' claim counter (same rule).
  alignas(128) std::atomic<uint64_t> dequeue_pos{0};
  // Line 2: sleepers announce themselves here (one 64-byte line each).
  alignas(128) MpmcEvent not_empty;  // consumers wait, producers notify
  MpmcEvent not_full;                // producers wait, consumers notify
  // Line 3: slow-path counters, written only on aborts, crashes and recovery.
  alignas(128) std::atomic<uint64_t> abandoned{0};  // claims turned into skip records
  std::atomic<uint64_t> redelivered{0};             // orphaned messages re-delivered
  std::atomic<int64_t> orphans{0};                  // orphaned messages not yet adopted
  std::atomic<uint64_t> recoveries{0};              // dead handles recovered (registry entries)
};
static_assert(sizeof(MpmcControl) == 512);
static_assert(offsetof(MpmcControl, dequeue_pos) == 128);
static_assert(offsetof(MpmcControl, not_empty) == 256);
static_assert(offsetof(MpmcControl, not_full) == 320);
static_assert(offsetof(MpmcControl, abandoned) == 384);
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::is_standard_layout_v<MpmcControl>);

enum : uint32_t { kRoleNone = 0, kRoleProducer = 1, kRoleConsumer = 2 };

struct MpmcRegistryEntry {
  // Packed ProcessIdentity of the holder (a name for tools), 0 = free. Written after the
  // holder took HolderLock slot i, cleared before it drops it (see LIVENESS above).
  alignas(64) std::atomic<uint64_t> owner{0};
  std::atomic<uint32_t> role{kRoleNone};
  // Set (never cleared) by the first recovery of the entry: a revoked handle of it may still
  // run and leave stray stamps naming it, so every later registration of the entry scans
  // for them before it hands the index out (a cost only for entries that were recovered).
  std::atomic<uint32_t> ever_recovered{0};
  // Bumped when the entry is handed out and when it is recovered (rule 1 above).
  std::atomic<uint64_t> generation{0};
  // Not handed out while dequeue_pos < this (rule 2 above). 0: no quarantine.
  std::atomic<uint64_t> quarantine_until{0};
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
