// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// EventCount: the sleep/wake word pair that lets a waiter sleep on a futex in shared memory
// while the fast path of the other side stays free of system calls.
//
//   waiter:   waiters += 1; s = seq |= 1 (arm); re-check state; futex_wait(&seq, s);
//             waiters -= 1
//   notifier: publish state; if (waiters != 0 && (seq & 1)) { seq: s -> s + 1 (disarm, CAS);
//             futex_wake(&seq) }
//
// The low bit of `seq` says "somebody went to sleep on this value". The first notifier
// clears it (changing the value, so no sleeper on it can miss the wake) and makes the one
// wake call; later notifiers see the bit clear and make none until a waiter re-arms. So a
// burst of notifications costs one futex_wake per sleep, not one per notification while
// the woken waiter has not yet been scheduled.
//
// SYNC(event-count): every access here and the state publication/re-check around it are
// seq_cst. In the single total order either the notifier's load of `waiters` follows the
// waiter's increment, or it precedes it (then the waiter's re-check, later in the order,
// sees the published state). In the first case the notifier's load of `seq` follows the
// waiter's arming RMW: it sees the bit set (and disarms it: the value changes, so the
// waiter's futex_wait returns EAGAIN or is woken), or it sees it clear because another
// notifier disarmed it after the arming - which changed the value the waiter sleeps on in
// the same way. No wake-up is lost. A notifier with no sleeper pays one load of a line that
// only changes when somebody goes to sleep.
//
// A waiter killed while asleep leaves `waiters` too high and possibly the bit set: at most
// one needless wake call follows, then one extra load per notification (slower, never
// wrong). Where only one role's holder ever sleeps on an event (SPSC rings: spsc_ring.cc,
// "Sleepers"), the successor that takes over a dead holder's role resets `waiters`. The
// MPMC queue, with many sleepers per event, uses a sleeper *set* instead (MpmcEvent,
// mpmc_layout.h) that recovery of a dead registry entry clears.
//
// Waiter interface used by BlockingWaitWith (blocking_wait.h): Announce(), PrepareWait(),
// Retire(), Word() (the futex word). EventCount provides it; so does MpmcSleeper.
#ifndef SHMLINK_RINGBUF_EVENT_COUNT_H_
#define SHMLINK_RINGBUF_EVENT_COUNT_H_

#include <atomic>
#include <climits>
#include <cstdint>

#include <shmlink/futex.h>

namespace shmlink {

// The notifier's half after it saw a sleeper: disarms `seq` (if armed) and wakes it.
// Returns true if it made the futex_wake call. SYNC(event-count): seq_cst load and CAS.
inline bool DisarmAndWake(std::atomic<uint32_t>& seq) noexcept {
  uint32_t s = seq.load(std::memory_order_seq_cst);
  while ((s & 1u) != 0) {
    if (seq.compare_exchange_weak(s, s + 1, std::memory_order_seq_cst)) {
      FutexWake(&seq, INT_MAX);
      return true;
    }
  }
  return false;
}

struct EventCount {
  std::atomic<uint32_t> seq{0};      // futex word; low bit: armed by a waiter
  std::atomic<uint32_t> waiters{0};  // number of processes between announce and retire

  // Waiter side, after incrementing `waiters`: arms the word and returns the value to pass
  // to futex_wait. SYNC(event-count): seq_cst RMW.
  uint32_t PrepareWait() noexcept { return seq.fetch_or(1, std::memory_order_seq_cst) | 1u; }
  // Waiter side: announce before PrepareWait, retire after the wait (SYNC(event-count):
  // seq_cst RMWs).
  void Announce() noexcept { waiters.fetch_add(1, std::memory_order_seq_cst); }
  void Retire() noexcept { waiters.fetch_sub(1, std::memory_order_seq_cst); }
  std::atomic<uint32_t>* Word() noexcept { return &seq; }

  // Notifier side; call after the state change was published with a seq_cst store/RMW.
  // Returns true if it made a futex_wake system call (for the caller's wake_calls counter).
  bool NotifyAll() noexcept {
    // SYNC(event-count): seq_cst loads and CAS, see the file comment.
    if (waiters.load(std::memory_order_seq_cst) == 0) return false;
    return DisarmAndWake(seq);
  }
};

static_assert(std::is_standard_layout_v<EventCount> && sizeof(EventCount) == 8);

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_EVENT_COUNT_H_
