// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// BlockingWait: the one wait loop behind every blocking call of the rings and queues.
// Internal header: the public contract is WaitOptions (wait_options.h).
#ifndef SHMLINK_RINGBUF_BLOCKING_WAIT_H_
#define SHMLINK_RINGBUF_BLOCKING_WAIT_H_

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <utility>

#include <shmlink/event_count.h>
#include <shmlink/futex.h>
#include <shmlink/ring_error.h>
#include <shmlink/role_stats.h>
#include <shmlink/wait_options.h>

namespace shmlink::internal {

inline void CpuRelax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// t + d, or time_point::max() if that would overflow (d < 0 counts as 0). A deadline of
// max() is never reached: "forever".
inline std::chrono::steady_clock::time_point SaturatingAdd(std::chrono::steady_clock::time_point t,
                                                           std::chrono::nanoseconds d) noexcept {
  using Clock = std::chrono::steady_clock;
  if (d.count() <= 0) return t;
  if (t >= Clock::time_point::max()) return t;
  const Clock::duration room = Clock::time_point::max() - t;
  if (d >= std::chrono::duration_cast<std::chrono::nanoseconds>(room)) {
    return Clock::time_point::max();
  }
  return t + std::chrono::duration_cast<Clock::duration>(d);
}

inline bool WouldBlock(const std::error_code& ec) noexcept {
  return ec == make_error_code(RingErrc::kWouldBlock);
}

// Calls try_fn() until it returns anything but kWouldBlock, following `opts`.
//  - `event`: the EventCount (or any type with its waiter interface, event_count.h) the
//    other side notifies after making progress.
//  - `peer_dead()`: true only on the kernel's evidence that the awaited process died (its
//    holder lock is free: holder_lock.h); then kPeerDead is returned once try_fn() still
//    says kWouldBlock (so everything already committed is delivered first). Slow path: it
//    is called at most once per opts.liveness_check. Unknown must answer false.
//  - `stats`: the waiting role's counters (waits, sleeps, wakeups; role_stats.h), or nullptr.
//    Only the role's holder may pass them (single writer).
// try_fn's reads of the shared state must be seq_cst (see event_count.h).
template <typename TryFn, typename Event, typename PeerDeadFn>
auto BlockingWaitWith(TryFn&& try_fn, Event& event, PeerDeadFn&& peer_dead, const WaitOptions& opts,
                      RoleStats* stats = nullptr) -> decltype(try_fn()) {
  using Clock = std::chrono::steady_clock;
  auto r = try_fn();
  if (r || !WouldBlock(r.error())) return r;
  if (stats != nullptr) CountAdd(stats->waits, 1);
  // Every period below is sane whatever the caller passed (wait_options.h): a liveness
  // period <= 0 made the sleep slice negative (an untimed futex wait: no timeout, no
  // liveness) or the loop read /proc on every pass; a huge timeout overflowed the deadline.
  const std::chrono::nanoseconds check = WaitOptions::EffectiveLivenessCheck(opts.liveness_check);
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline =
      opts.timeout.count() < 0 ? Clock::time_point::max() : SaturatingAdd(start, opts.timeout);
  const bool infinite = deadline == Clock::time_point::max();
  Clock::time_point next_liveness = SaturatingAdd(start, check);

  // Phase 1: poll.
  if (opts.strategy != WaitStrategy::kSleep) {
    const bool spin_forever = opts.strategy == WaitStrategy::kSpin;
    const Clock::time_point spin_end =
        spin_forever ? deadline : std::min(deadline, SaturatingAdd(start, opts.spin));
    for (uint32_t i = 1;; ++i) {
      CpuRelax();
      r = try_fn();
      if (r || !WouldBlock(r.error())) return r;
      if ((i & 255) == 0) {
        const Clock::time_point now = Clock::now();
        if (now >= spin_end) {
          if (now >= deadline) return RingErrc::kTimedOut;
          break;
        }
        if (now >= next_liveness) {
          if (peer_dead()) {
            r = try_fn();
            return (r || !WouldBlock(r.error())) ? r : decltype(r)(RingErrc::kPeerDead);
          }
          next_liveness = SaturatingAdd(now, check);
        }
      }
    }
  }

  // Phase 2: sleep on the event count, waking at least every liveness_check.
  for (;;) {
    event.Announce();                          // SYNC(event-count): announce
    const uint32_t seq = event.PrepareWait();  // SYNC(event-count): arm
    r = try_fn();                              // re-check after announcing
    if (r || !WouldBlock(r.error())) {
      event.Retire();
      return r;
    }
    const Clock::time_point now = Clock::now();
    if (now >= deadline) {
      event.Retire();
      return RingErrc::kTimedOut;
    }
    // Liveness costs a system call: at most once per liveness_check, not on every entry
    // into sleep (with kSleep that would be once per message).
    if (now >= next_liveness) {
      if (peer_dead()) {
        event.Retire();
        r = try_fn();
        return (r || !WouldBlock(r.error())) ? r : decltype(r)(RingErrc::kPeerDead);
      }
      next_liveness = SaturatingAdd(now, check);
    }
    std::chrono::nanoseconds slice = next_liveness - now;
    if (!infinite) slice = std::min<std::chrono::nanoseconds>(slice, deadline - now);
    if (stats != nullptr) CountAdd(stats->sleeps, 1);
    const int wait_rc = FutexWait(event.Word(), seq, slice);
    if (stats != nullptr && wait_rc == 0) CountAdd(stats->wakeups, 1);
    event.Retire();
  }
}

// BlockingWaitWith for waits with no single peer to watch (an MPMC queue recovers dead
// participants inside try_fn; a topic publisher skips dead subscribers there): the wait
// itself never reports kPeerDead.
template <typename TryFn, typename Event>
auto BlockingWait(TryFn&& try_fn, Event& event, const WaitOptions& opts, RoleStats* stats = nullptr)
    -> decltype(try_fn()) {
  return BlockingWaitWith(
      std::forward<TryFn>(try_fn), event, [] { return false; }, opts, stats);
}

}  // namespace shmlink::internal

#endif  // SHMLINK_RINGBUF_BLOCKING_WAIT_H_
