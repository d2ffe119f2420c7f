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
#ifndef SHMLINK_RINGBUF_WAIT_OPTIONS_H_
#define SHMLINK_RINGBUF_WAIT_OPTIONS_H_

#include <chrono>

namespace shmlink {

enum class WaitStrategy { kSpin, kSpinThenSleep, kSleep };

struct WaitOptions {
  static constexpr std::chrono::nanoseconds kInfinite{-1};

  WaitStrategy strategy = WaitStrategy::kSpinThenSleep;
  // Polling time before sleeping (kSpinThenSleep only).
  std::chrono::nanoseconds spin = std::chrono::microseconds(50);
  // Total time limit; kInfinite (negative) waits forever. 0 behaves like the try_ form.
  std::chrono::nanoseconds timeout = kInfinite;
  // Bound on how late a dead peer is noticed by a blocked call.
  std::chrono::nanoseconds liveness_check = std::chrono::milliseconds(20);

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
