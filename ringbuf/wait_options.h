// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// WaitOptions: how a blocking ring/queue call waits. The strategy is the caller's choice:
//
//   kSpin           busy-polls until ready or timeout. Lowest latency; burns a core.
//   kSpinThenSleep  polls for `spin` (default 50 us, about the cost of waking an idle core
//                   on these VMs), then sleeps on a futex word in the segment. The other
//                   side makes a wake syscall only when a sleeper has flagged itself, so
//                   steady traffic never enters the kernel and an idle waiter uses no CPU.
//   kSleep          sleeps on the futex at once (spin = 0).
//
// While sleeping, a waiter wakes at least every `liveness_check` to see whether the
// process holding the opposite role has died (pid + start time), so a blocked call
// returns kPeerDead within about that bound instead of hanging.
//
// No value makes a wait ignore its timeout or a dead peer:
//   timeout         negative: forever. Any positive value, up to nanoseconds::max(), is
//                   honoured; one too large for the clock (the deadline would overflow)
//                   means forever too. Liveness is checked all the same.
//   liveness_check  <= 0 means the default, kDefaultLivenessCheck (20 ms); positive values
//                   below kMinLivenessCheck (1 ms) are raised to it (each check reads
//                   /proc). Effective() gives the value a wait uses.
//   spin            negative counts as 0.
#ifndef SHMLINK_RINGBUF_WAIT_OPTIONS_H_
#define SHMLINK_RINGBUF_WAIT_OPTIONS_H_

#include <chrono>

namespace shmlink {

enum class WaitStrategy { kSpin, kSpinThenSleep, kSleep };

struct WaitOptions {
  static constexpr std::chrono::nanoseconds kInfinite{-1};
  static constexpr std::chrono::nanoseconds kDefaultLivenessCheck = std::chrono::milliseconds(20);
  static constexpr std::chrono::nanoseconds kMinLivenessCheck = std::chrono::milliseconds(1);

  WaitStrategy strategy = WaitStrategy::kSpinThenSleep;
  // Polling time before sleeping (kSpinThenSleep only).
  std::chrono::nanoseconds spin = std::chrono::microseconds(50);
  // Total time limit; kInfinite (negative) waits forever. 0 behaves like the try_ form.
  std::chrono::nanoseconds timeout = kInfinite;
  // Bound on how late a dead peer is noticed by a blocked call (see above for <= 0 and
  // values below kMinLivenessCheck).
  std::chrono::nanoseconds liveness_check = kDefaultLivenessCheck;

  // The liveness period a wait with these options uses.
  static constexpr std::chrono::nanoseconds EffectiveLivenessCheck(
      std::chrono::nanoseconds requested) {
    if (requested.count() <= 0) return kDefaultLivenessCheck;
    return requested < kMinLivenessCheck ? kMinLivenessCheck : requested;
  }

  static WaitOptions Spin(std::chrono::nanoseconds timeout = kInfinite) {
    return {WaitStrategy::kSpin, std::chrono::nanoseconds(0), timeout};
  }
  static WaitOptions Sleep(std::chrono::nanoseconds timeout = kInfinite) {
    return {WaitStrategy::kSleep, std::chrono::nanoseconds(0), timeout};
  }
  static WaitOptions WithTimeout(std::chrono::nanoseconds timeout) {
    WaitOptions o;
    o.timeout = timeout;
    return o;
  }
};

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_WAIT_OPTIONS_H_
