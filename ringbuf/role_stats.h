// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// RoleStats: the counters one role holder keeps in shared memory, for tools (the `shmlink`
// command) to read while the link runs.
//
// Single writer: a RoleStats block is written only by the process that holds the role it
// belongs to (an SPSC ring's producer or consumer; one MPMC registry entry), one thread at
// a time, so a counter is never bumped with an atomic read-modify-write. On the data path
// (messages, bytes) the handle keeps running totals, loaded from the block when it takes
// the role, and stores them (relaxed); slow-path counters use CountAdd (relaxed load and
// store). The block lives on a cache line that its writer
// already writes on the data path (SPSC) or that only its writer writes (MPMC), so the
// data path pays two L1 hits per bump and no coherence traffic. A role taken over from a
// dead holder continues the counts (the new holder loads them from the segment).
//
// Readers (any process) load each counter relaxed: every counter is a monotonic statistic
// with no ordering to anything else, and a reader may see them slightly out of step with
// each other and with the ring positions (snapshot). A holder killed between its load and
// its store of a counter loses at most that one increment.
//
//   field         producer side                      consumer side
//   messages      messages committed                 messages consumed (released)
//   bytes         payload bytes committed            payload bytes consumed
//   waits         blocking calls that found the ring full / empty (spun or slept)
//   sleeps        futex_wait calls (the waiter went to sleep)
//   wakeups       futex_wait calls that returned because the other side woke them
//   wake_calls    futex_wake system calls made to wake the other side
//   takeovers     times this role was taken over from a dead holder
#ifndef SHMLINK_RINGBUF_ROLE_STATS_H_
#define SHMLINK_RINGBUF_ROLE_STATS_H_

#include <atomic>
#include <cstdint>
#include <type_traits>

namespace shmlink {

struct RoleStats {
  std::atomic<uint64_t> messages{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> waits{0};
  std::atomic<uint64_t> sleeps{0};
  std::atomic<uint64_t> wakeups{0};
  std::atomic<uint64_t> wake_calls{0};
  std::atomic<uint64_t> takeovers{0};
  std::atomic<uint64_t> reserved{0};  // zero; room for one more counter
};
static_assert(sizeof(RoleStats) == 64);
static_assert(std::is_standard_layout_v<RoleStats>);
static_assert(std::atomic<uint64_t>::is_always_lock_free);

// Adds `n` to a single-writer counter. Relaxed load + relaxed store, no RMW: the caller is
// the counter's only writer (see the file comment), and readers want no ordering.
inline void CountAdd(std::atomic<uint64_t>& counter, uint64_t n) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// Plain copy of a RoleStats block (relaxed loads), for tools.
struct RoleCounts {
  uint64_t messages = 0, bytes = 0, waits = 0, sleeps = 0, wakeups = 0, wake_calls = 0,
           takeovers = 0;

  // Sums the counts of several handles or segments (totals in reports).
  RoleCounts& operator+=(const RoleCounts& o) noexcept {
    messages += o.messages;
    bytes += o.bytes;
    waits += o.waits;
    sleeps += o.sleeps;
    wakeups += o.wakeups;
    wake_calls += o.wake_calls;
    takeovers += o.takeovers;
    return *this;
  }
};
inline RoleCounts ReadRoleStats(const RoleStats& s) noexcept {
  // Relaxed: statistics, see the file comment.
  constexpr auto r = std::memory_order_relaxed;
  return {s.messages.load(r), s.bytes.load(r),      s.waits.load(r),    s.sleeps.load(r),
          s.wakeups.load(r),  s.wake_calls.load(r), s.takeovers.load(r)};
}

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_ROLE_STATS_H_
