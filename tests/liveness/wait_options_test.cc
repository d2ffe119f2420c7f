// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// WaitOptions values that used to defeat a blocking wait, against real peer processes
// (fork, real shm, SIGKILL). Each wait runs in a forked child so that a hang shows up as a
// child that overstays a generous bound instead of a hung test:
//  * liveness_check 0 or negative: the timeout is honoured (no early return), the waiter
//    sleeps instead of looping on /proc reads, and a peer killed during the wait is reported
//    (kPeerDead); a negative value used to turn the sleep into an untimed futex wait.
//  * timeout = nanoseconds::max(): waits (it used to overflow the deadline and time out at
//    once) and receives what the peer sends 100 ms later.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include "tests/test_util.h"

#include <shmlink/segment.h>
#include <shmlink/spsc_layout.h>
#include <shmlink/spsc_ring.h>

namespace shmlink {
namespace {

using namespace std::chrono_literals;
using testing::ForkChild;
using testing::Signal;
using testing::UniqueShmName;
using testing::WaitChildFor;

// What the waiting child saw.
struct WaitReport {
  std::atomic<int> started{0};
  std::atomic<int> error{-1};  // 0: received a message; else the RingErrc value
  std::atomic<int64_t> waited_ns{0};
};

// A producer child: claims the role, says so, then sends `send_after` later (never if
// negative) and sleeps until killed.
pid_t ForkProducer(const SpscRing& ring, const Signal& ready,
                   std::chrono::milliseconds send_after) {
  return ForkChild([&]() -> int {
    auto tx = ring.Producer();
    if (!tx) return 3;
    ready.Notify();
    if (send_after.count() >= 0) {
      std::this_thread::sleep_for(send_after);
      if (!tx->try_send(testing::Bytes("hello"))) return 4;
    }
    for (;;) ::pause();
  });
}

// A waiter child: claims the consumer role and peeks once with `opts`.
pid_t ForkWaiter(const SpscRing& ring, WaitReport* report, const WaitOptions& opts) {
  return ForkChild([&]() -> int {
    auto rx = ring.Consumer();
    if (!rx) return 3;
    report->started = 1;
    const auto start = std::chrono::steady_clock::now();
    auto m = rx->peek(opts);
    report->waited_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now() - start)
                            .count();
    report->error = m ? 0 : m.error().value();
    return 0;
  });
}

void KillAndReap(pid_t pid) {
  ::kill(pid, SIGKILL);
  EXPECT_EQ(testing::WaitChild(pid), 128 + SIGKILL);
}

// consumer_stats.sleeps of the ring (role_stats.h), read from its control block.
uint64_t ConsumerSleeps(const std::string& name) {
  auto seg = Segment::Open(name);
  if (!seg) return ~uint64_t{0};
  auto g = ValidateSpscSegment(*seg, SegmentKind::kSpscRing, 1);
  if (!g) return ~uint64_t{0};
  // Relaxed: a statistic, read after the waiter exited (reaped).
  return SpscRegionAt(*seg, *g, 0).control->consumer_stats.sleeps.load(std::memory_order_relaxed);
}

struct LivenessCase {
  const char* label;
  std::chrono::nanoseconds liveness_check;
  WaitStrategy strategy;
};

constexpr LivenessCase kOddLivenessChecks[] = {
    {"zero", 0ns, WaitStrategy::kSpinThenSleep},
    {"zero-sleep", 0ns, WaitStrategy::kSleep},
    {"negative", -1ms, WaitStrategy::kSpinThenSleep},
    {"negative-sleep", -1ms, WaitStrategy::kSleep},
    {"most-negative", std::chrono::nanoseconds::min(), WaitStrategy::kSleep},
};

// A live peer that never sends: the wait ends with kTimedOut, not before its timeout, and
// sleeps rather than spinning on /proc.
TEST(WaitOptionsTraps, OddLivenessCheckHonoursTheTimeout) {
  for (const LivenessCase& c : kOddLivenessChecks) {
    SCOPED_TRACE(c.label);
    const std::string name = UniqueShmName("wo-timeout");
    auto ring = SpscRing::Create(name, 4096);
    ASSERT_TRUE(ring) << ring.error().message();
    Signal ready;
    const pid_t producer = ForkProducer(*ring, ready, -1ms);
    ASSERT_TRUE(ready.Wait());
    auto* report = testing::NewShared<WaitReport>();
    WaitOptions opts;
    opts.strategy = c.strategy;
    opts.timeout = 500ms;
    opts.liveness_check = c.liveness_check;
    const pid_t waiter = ForkWaiter(*ring, report, opts);
    EXPECT_EQ(WaitChildFor(waiter, 10s), 0) << "the wait ignored its timeout";
    EXPECT_EQ(report->error.load(), static_cast<int>(RingErrc::kTimedOut));
    EXPECT_GE(report->waited_ns.load(), std::chrono::nanoseconds(500ms).count());
    // The waiter's futex sleeps, from the ring's own counters: one per liveness period
    // (about 25 in 500 ms at the 20 ms default), not one per pass of a loop that reads
    // /proc without sleeping (thousands).
    EXPECT_LT(ConsumerSleeps(name), 200u) << "busy-looped";
    KillAndReap(producer);
    testing::DeleteShared(report);
  }
}

// The peer is SIGKILLed during the wait (no timeout): the waiter reports kPeerDead.
TEST(WaitOptionsTraps, OddLivenessCheckStillSeesAPeerDie) {
  for (const LivenessCase& c : kOddLivenessChecks) {
    SCOPED_TRACE(c.label);
    auto ring = SpscRing::Create(UniqueShmName("wo-dead"), 4096);
    ASSERT_TRUE(ring) << ring.error().message();
    Signal ready;
    const pid_t producer = ForkProducer(*ring, ready, -1ms);
    ASSERT_TRUE(ready.Wait());
    auto* report = testing::NewShared<WaitReport>();
    WaitOptions opts;
    opts.strategy = c.strategy;
    opts.liveness_check = c.liveness_check;
    const pid_t waiter = ForkWaiter(*ring, report, opts);
    while (report->started.load() == 0) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(200ms);
    KillAndReap(producer);
    EXPECT_EQ(WaitChildFor(waiter, 10s), 0) << "the waiter missed its peer's death";
    EXPECT_EQ(report->error.load(), static_cast<int>(RingErrc::kPeerDead));
    testing::DeleteShared(report);
  }
}

// timeout = nanoseconds::max() waits (forever) and receives a message sent 100 ms later.
TEST(WaitOptionsTraps, HugeTimeoutWaitsAndReceives) {
  for (WaitStrategy strategy : {WaitStrategy::kSpinThenSleep, WaitStrategy::kSleep}) {
    auto ring = SpscRing::Create(UniqueShmName("wo-max"), 4096);
    ASSERT_TRUE(ring) << ring.error().message();
    Signal ready;
    const pid_t producer = ForkProducer(*ring, ready, 100ms);
    ASSERT_TRUE(ready.Wait());
    auto* report = testing::NewShared<WaitReport>();
    WaitOptions opts;
    opts.strategy = strategy;
    opts.timeout = std::chrono::nanoseconds::max();
    const pid_t waiter = ForkWaiter(*ring, report, opts);
    EXPECT_EQ(WaitChildFor(waiter, 10s), 0);
    EXPECT_EQ(report->error.load(), 0) << "huge timeout: error " << report->error.load();
    KillAndReap(producer);
    testing::DeleteShared(report);
  }
}

}  // namespace
}  // namespace shmlink
