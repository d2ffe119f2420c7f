// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The kill-on-write tracer itself: it kills exactly at the armed write, no earlier and no
// later, and leaves unarmed children alone.
#include "tests/kill_on_write.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>

#include "gtest/gtest.h"

namespace shmlink::testing {
namespace {

using std::chrono::milliseconds;

// Two words in memory shared with the child: `watched` is armed, `after` is written right
// after each write to `watched`, so it tells how far the child got.
struct Shared {
  alignas(64) std::atomic<uint64_t> watched{0};
  alignas(64) std::atomic<uint64_t> after{0};
};

class KillOnWriteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    void* m =
        ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(m, MAP_FAILED);
    s_ = new (m) Shared();
  }
  void TearDown() override { ::munmap(s_, sizeof(Shared)); }
  // The child's loop: writes 1..10 to `watched`, each followed by the same to `after`.
  int Count() {
    for (uint64_t i = 1; i <= 10; ++i) {
      s_->watched.store(i, std::memory_order_release);
      s_->after.store(i, std::memory_order_release);
    }
    return 7;
  }
  Shared* s_ = nullptr;
};

TEST_F(KillOnWriteTest, KillsRightAfterTheNthWrite) {
  const TracedOutcome out = RunTraced(
      [&] {
        if (!KillOnWrite(&s_->watched, 0, 0, 3)) return 2;
        return Count();
      },
      milliseconds(20000));
  ASSERT_EQ(out.kind, TracedOutcome::kKilledAtPoint) << TracedOutcomeName(out.kind);
  EXPECT_EQ(out.word, 3u);
  EXPECT_EQ(s_->watched.load(), 3u);
  EXPECT_EQ(s_->after.load(), 2u);  // not one store after the third write
}

TEST_F(KillOnWriteTest, KillsAtTheFirstWriteThatMatchesTheMask) {
  const TracedOutcome out = RunTraced(
      [&] {
        if (!KillOnWrite(&s_->watched, 0xff, 7)) return 2;
        return Count();
      },
      milliseconds(20000));
  ASSERT_EQ(out.kind, TracedOutcome::kKilledAtPoint) << TracedOutcomeName(out.kind);
  EXPECT_EQ(out.word, 7u);
  EXPECT_EQ(s_->after.load(), 6u);
}

TEST_F(KillOnWriteTest, DisarmedOrUnarmedChildRunsToTheEnd) {
  TracedOutcome out = RunTraced([&] { return Count(); }, milliseconds(20000));
  EXPECT_EQ(out.kind, TracedOutcome::kExited) << TracedOutcomeName(out.kind);
  EXPECT_EQ(out.code, 7);
  EXPECT_EQ(s_->after.load(), 10u);
  s_->after.store(0);
  out = RunTraced(
      [&] {
        if (!KillOnWrite(&s_->watched)) return 2;
        if (!KillOnWrite(nullptr)) return 3;
        return Count();
      },
      milliseconds(20000));
  EXPECT_EQ(out.kind, TracedOutcome::kExited) << TracedOutcomeName(out.kind);
  EXPECT_EQ(out.code, 7);
  EXPECT_EQ(s_->after.load(), 10u);
}

TEST_F(KillOnWriteTest, OwnSignalsReachTheChildAndDeathIsReported) {
  TracedOutcome out = RunTraced(
      [&] {
        ::signal(SIGUSR1, [](int) {});
        ::raise(SIGUSR1);  // passed through by the tracer, handled
        ::raise(SIGTERM);  // passed through, default action kills
        return 0;
      },
      milliseconds(20000));
  EXPECT_EQ(out.kind, TracedOutcome::kSignaled) << TracedOutcomeName(out.kind);
  EXPECT_EQ(out.code, SIGTERM);
}

TEST_F(KillOnWriteTest, LimitKillsAHungChild) {
  const TracedOutcome out = RunTraced(
      [&] {
        for (;;) ::pause();
        return 0;
      },
      milliseconds(200));
  EXPECT_EQ(out.kind, TracedOutcome::kTimedOut) << TracedOutcomeName(out.kind);
}

TEST(KillOnWrite, OutsideRunTracedArmsNothing) {
  uint64_t word = 0;
  EXPECT_FALSE(KillOnWrite(&word));
}

}  // namespace
}  // namespace shmlink::testing
