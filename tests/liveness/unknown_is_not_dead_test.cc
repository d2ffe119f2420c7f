// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Unknown is not dead: a liveness check that cannot decide (here: the checker is out of
// file descriptors, EMFILE) must not take a live holder for dead. SPSC roles are holder
// locks (layout 4): deciding needs no fd, so a checker out of fds gets the truth, and only
// a claim, which needs an fd for its lock, fails. Real processes (fork), real shm, real
// SIGKILL:
//  * a parent at EMFILE asks for the producer role a live child holds: the claim fails
//    with EMFILE and takes nothing;
//  * a consumer at EMFILE waits for a live, silent producer: kTimedOut, not kPeerDead; and
//    once the producer is killed, still at EMFILE: kPeerDead (the truth);
//  * a process out of fds at its first claim fails with EMFILE (its lock needs an fd) and
//    the failure is not remembered: with fds again it claims, and others see it alive;
//  * MPMC recovery at EMFILE leaves a live consumer's claim and entry alone.
// Each call is made once with fds first (a warm-up): UBSan's vptr check caches the types it
// verified, and verifying one needs a pipe, which at EMFILE fails (a false report).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <string>
#include <system_error>

#include "tests/test_util.h"

#include <shmlink/mpmc_queue.h>
#include <shmlink/spsc_ring.h>

namespace shmlink {
namespace {

using namespace std::chrono_literals;
using testing::FdExhaustion;
using testing::ForkChild;
using testing::Signal;
using testing::UniqueShmName;

// Kills (SIGKILL) and reaps `pid`.
void KillAndReap(pid_t pid) {
  ::kill(pid, SIGKILL);
  EXPECT_EQ(testing::WaitChild(pid), 128 + SIGKILL);
}

// A child that claims the producer role of `ring`, says so, and sleeps until killed.
pid_t ForkLiveProducer(const SpscRing& ring, const Signal& ready) {
  return ForkChild([&]() -> int {
    auto tx = ring.Producer();
    if (!tx) return 3;
    ready.Notify();
    for (;;) ::pause();
  });
}

TEST(UnknownIsNotDead, ProducerClaimOutOfFdsDoesNotTakeALiveRole) {
  auto ring = SpscRing::Create(UniqueShmName("unk-claim"), 4096);
  ASSERT_TRUE(ring) << ring.error().message();
  Signal ready;
  const pid_t child = ForkLiveProducer(*ring, ready);
  ASSERT_TRUE(ready.Wait());
  ASSERT_FALSE(ring->Producer());  // warm-up (see the file comment)
  int dup_errno = 0;
  std::error_code claim_error;
  bool claimed = false;
  {
    FdExhaustion exhausted;
    if (::dup(0) < 0) dup_errno = errno;
    auto tx = ring->Producer();
    claimed = tx.has_value();
    if (!tx) claim_error = tx.error();
  }
  EXPECT_EQ(dup_errno, EMFILE);
  EXPECT_FALSE(claimed) << "took the producer role of a live process while out of fds";
  // The lock needs an fd: the claim fails with the errno, typed, and holds nothing.
  EXPECT_EQ(claim_error, std::errc::too_many_files_open) << claim_error.message();
  EXPECT_EQ(ring->Producer().error(), RingErrc::kRoleTaken);  // with fds: still the child's
  KillAndReap(child);
  // The evidence path still works: the dead holder's role is taken over.
  EXPECT_TRUE(ring->Producer());
}

TEST(UnknownIsNotDead, ConsumerWaitOutOfFdsTimesOutInsteadOfPeerDead) {
  auto ring = SpscRing::Create(UniqueShmName("unk-peek"), 4096);
  ASSERT_TRUE(ring) << ring.error().message();
  auto rx = ring->Consumer();
  ASSERT_TRUE(rx);
  Signal ready;
  const pid_t child = ForkLiveProducer(*ring, ready);
  ASSERT_TRUE(ready.Wait());
  ASSERT_FALSE(rx->peek(WaitOptions::WithTimeout(1ms)));  // warm-up (see the file comment)
  std::error_code peek_error, after_kill_error;
  std::chrono::steady_clock::duration waited{};
  {
    FdExhaustion exhausted;
    const auto start = std::chrono::steady_clock::now();
    auto m = rx->peek(WaitOptions::WithTimeout(500ms));
    waited = std::chrono::steady_clock::now() - start;
    if (!m) peek_error = m.error();
    // A real death is reported even out of fds: the lock probe opens nothing.
    ::kill(child, SIGKILL);
    while (!testing::HasExited(child)) ::usleep(1000);
    auto after = rx->peek(WaitOptions::WithTimeout(5s));
    if (!after) after_kill_error = after.error();
  }
  EXPECT_EQ(peek_error, RingErrc::kTimedOut) << peek_error.message();
  EXPECT_GE(waited, 500ms);
  EXPECT_EQ(after_kill_error, RingErrc::kPeerDead) << after_kill_error.message();
  EXPECT_EQ(testing::WaitChild(child), 128 + SIGKILL);
}

struct FirstReadReport {
  std::atomic<int> first_claim_ok{-1};
  std::atomic<int> first_claim_errno{0};
  std::atomic<int> retry_ok{-1};
};

// A process is out of fds at its first claim (and its first read of its own identity).
// The claim fails with EMFILE and takes nothing, and nothing of the failure is remembered:
// once it has fds again, it claims, and a third party's claim sees a live holder.
TEST(UnknownIsNotDead, FailedFirstSelfIdentityReadIsNotCachedNorClaimed) {
  auto ring = SpscRing::Create(UniqueShmName("unk-self"), 4096);
  ASSERT_TRUE(ring) << ring.error().message();
  ASSERT_TRUE(ring->Producer());  // warm-up (see the file comment); released at once
  auto* report = testing::NewShared<FirstReadReport>();
  Signal ready;
  const pid_t child = ForkChild([&]() -> int {
    std::optional<SpscProducer> tx;
    {
      FdExhaustion exhausted;
      auto first = ring->Producer();
      report->first_claim_ok = first.has_value() ? 1 : 0;
      if (first) {
        tx.emplace(std::move(*first));
      } else {
        report->first_claim_errno = first.error().value();
      }
    }
    if (!tx) {
      auto retry = ring->Producer();
      report->retry_ok = retry.has_value() ? 1 : 0;
      if (retry) tx.emplace(std::move(*retry));
    }
    ready.Notify();
    for (;;) ::pause();
  });
  ASSERT_TRUE(ready.Wait());
  EXPECT_EQ(report->first_claim_ok.load(), 0) << "claimed a role without an fd for its lock";
  EXPECT_EQ(report->first_claim_errno.load(), EMFILE);
  if (report->first_claim_ok.load() == 0) {
    EXPECT_EQ(report->retry_ok.load(), 1);
  }
  // Whichever claim the child holds, it must look alive to others.
  auto tx = ring->Producer();
  EXPECT_FALSE(tx) << "the child's role was free for the taking while it lived";
  if (!tx) {
    EXPECT_EQ(tx.error(), RingErrc::kRoleTaken) << tx.error().message();
  }
  KillAndReap(child);
  testing::DeleteShared(report);
}

// MPMC: recovery out of fds must not orphan a live consumer's message nor free its entry.
TEST(UnknownIsNotDead, MpmcRecoveryOutOfFdsLeavesALiveConsumerAlone) {
  auto q = MpmcQueue::Create(UniqueShmName("unk-mpmc"), 8, 64);
  ASSERT_TRUE(q) << q.error().message();
  {
    auto tx = q->Producer();
    ASSERT_TRUE(tx);
    ASSERT_TRUE(tx->try_push(testing::Bytes("held")));
  }
  Signal ready;
  const pid_t child = ForkChild([&]() -> int {
    auto rx = q->Consumer();
    if (!rx) return 3;
    auto m = rx->try_claim();
    if (!m) return 4;
    ready.Notify();
    for (;;) ::pause();
  });
  ASSERT_TRUE(ready.Wait());
  ASSERT_EQ(q->RecoverDead(), 0u);  // warm-up (see the file comment)
  size_t recovered = 99;
  {
    FdExhaustion exhausted;
    recovered = q->RecoverDead();
  }
  EXPECT_EQ(recovered, 0u) << "recovered a live consumer's entry while out of fds";
  EXPECT_EQ(q->stats().orphans, 0u);
  EXPECT_EQ(q->stats().consumers, 1u);
  KillAndReap(child);
  EXPECT_EQ(q->RecoverDead(), 1u);
  EXPECT_EQ(q->stats().orphans, 1u);
}

}  // namespace
}  // namespace shmlink
