// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// EventCount: the sleep/wake word pair that lets a waiter sleep on a futex in shared memory
// while the fast path of the other side stays free of system calls.
//
//   waiter:   waiters += 1; s = seq; re-check state; futex_wait(&seq, s); waiters -= 1
//   notifier: publish state; if (waiters != 0) { seq += 1; futex_wake(&seq) }
//
// SYNC(event-count): every access here and the state publication/re-check around it are
// seq_cst. In the single total order either the notifier's load of `waiters` follows the
// waiter's increment (it sees a sleeper and bumps `seq`, so futex_wait returns EAGAIN or is
// woken), or it precedes it (then the waiter's re-check, later in the order, sees the
// published state). Either way no wake-up is lost. A notifier with no sleeper pays one
// load of a line that only changes when somebody goes to sleep.
//
// A waiter killed while asleep leaves `waiters` too high: notifiers then make needless
// wake calls (slower, never wrong).
#ifndef SHMLINK_RINGBUF_EVENT_COUNT_H_
#define SHMLINK_RINGBUF_EVENT_COUNT_H_

#include <atomic>
#include <climits>
#include <cstdint>

#include "ringbuf/futex.h"

namespace shmlink {

struct EventCount {
  std::atomic<uint32_t> seq{0};      // futex word; bumped by notifiers that saw a sleeper
  std::atomic<uint32_t> waiters{0};  // number of processes between announce and retire

  // Notifier side; call after the state change was published with a seq_cst store/RMW.
  void NotifyAll() noexcept {
    // SYNC(event-count): seq_cst load, see the file comment.
    if (waiters.load(std::memory_order_seq_cst) != 0) {
      seq.fetch_add(1, std::memory_order_seq_cst);
      FutexWake(&seq, INT_MAX);
    }
  }
};

static_assert(std::is_standard_layout_v<EventCount> && sizeof(EventCount) == 8);

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_EVENT_COUNT_H_
