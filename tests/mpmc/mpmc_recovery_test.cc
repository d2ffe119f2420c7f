// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Deterministic regression tests for recovery of a consumer that was SIGKILLed while it
// held a message but has not finished dying. Such a process is not a zombie yet (it waits
// for a CPU, or the kernel is still tearing it down), so a liveness check that only knew
// "zombie or gone" took it for alive: the survivors did not redeliver its message and could
// finish with it orphaned (the flaky mpmc_fault_test failure, seed 3884238740 trial 149).
// Here the victim is kept from dying for a while on purpose:
//  * KilledButNotYetScheduled: it runs SCHED_IDLE on a CPU where another process spins, so
//    after kill() it waits (hundreds of ms) for a CPU with SIGKILL pending;
//  * KilledWhileExiting: it has a large populated address space, so after kill() the
//    kernel takes a long time (PF_EXITING set) to make it a zombie.
// In both, RecoverDead() right after kill() must orphan the message for redelivery.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "ringbuf/mpmc_queue.h"
#include "ringbuf/process_identity.h"
#include "tests/mpmc/mpmc_test_util.h"
#include "tests/test_util.h"

namespace shmlink {
namespace {

using namespace std::chrono_literals;
using testing::ForkChild;
using testing::ShmExists;
using testing::UniqueShmName;
using testing::WaitChildFor;

struct Flags {
  std::atomic<uint32_t> holding{0};
};

// First CPU this process may run on.
int SomeAllowedCpu() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
  for (int i = 0; i < CPU_SETSIZE; ++i) {
    if (CPU_ISSET(i, &set)) return i;
  }
  return 0;
}

bool PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return ::sched_setaffinity(0, sizeof(set), &set) == 0;
}

// True while `pid` has not exited (not even as a zombie); does not reap it.
bool NotExitedYet(pid_t pid) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
         info.si_pid == 0;
}

// Victim body: claims the one queued message, calls `prepare`, flags that it holds the
// message, then spins until it is killed.
template <typename Prepare>
int HoldMessage(const std::string& name, Flags* f, Prepare prepare) {
  auto q = MpmcQueue::Attach(name);
  if (!q) return 2;
  auto rx = q->Consumer();
  if (!rx) return 3;
  auto m = rx->claim(WaitOptions::WithTimeout(5s));
  if (!m) return 4;
  if (!prepare()) return 5;
  f->holding.store(1);
  for (;;) asm volatile("" ::: "memory");
}

// Kills `victim` (which holds the queue's only message) and checks that recovery right
// away orphans it and another consumer gets it, redelivered.
void KillAndExpectRedelivery(MpmcQueue& q, pid_t victim, const char* payload) {
  auto rx = q.Consumer();
  ASSERT_TRUE(rx) << rx.error().message();
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  const size_t recovered = q.RecoverDead();
  // The point of the test: the victim had not finished dying when it was recovered.
  const bool window_hit = NotExitedYet(victim);
  EXPECT_EQ(recovered, 1u) << "a SIGKILLed consumer holding a message was taken for alive";
  EXPECT_EQ(q.stats().orphans, 1u);
  auto m = rx->try_claim();
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_TRUE(m->redelivered);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m->data.data()), m->data.size()), payload);
  ASSERT_TRUE(rx->release());
  if (!window_hit) {
    std::printf("note: the victim was already a zombie; the dying window was not exercised\n");
  }
  EXPECT_EQ(WaitChildFor(victim, 10000ms), 128 + SIGKILL);
  q.RecoverDead();  // frees the entry if a dying owner's was kept
  const MpmcStats st = q.stats();
  EXPECT_EQ(st.redelivered, 1u);
  EXPECT_EQ(st.orphans, 0u);
  EXPECT_EQ(st.size, 0u);
  EXPECT_EQ(st.consumers, 1u);  // rx only
}

TEST(MpmcRecoveryTest, KilledButNotYetScheduled) {
  const std::string name = UniqueShmName("mpmc-dying");
  Flags* f = testing::SharedScratch<Flags>(1);
  ASSERT_NE(f, nullptr);
  new (f) Flags();
  const int cpu = SomeAllowedCpu();
  {
    auto q = MpmcQueue::Create(name, 8, 64);
    ASSERT_TRUE(q) << q.error().message();
    auto tx = q->Producer();
    ASSERT_TRUE(tx);
    const char kMsg[] = "held by a dying consumer";
    ASSERT_TRUE(tx->try_push(std::as_bytes(std::span(kMsg, sizeof(kMsg) - 1))));
    // The hog keeps `cpu` busy, so the SCHED_IDLE victim hardly ever runs there.
    const pid_t hog = ForkChild([cpu] {
      if (!PinTo(cpu)) return 2;
      for (;;) asm volatile("" ::: "memory");
    });
    const pid_t victim = ForkChild([&] {
      return HoldMessage(name, f, [cpu] {
        sched_param sp{};
        return PinTo(cpu) && ::sched_setscheduler(0, SCHED_IDLE, &sp) == 0;
      });
    });
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (f->holding.load() == 0 && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(1ms);
    }
    ASSERT_EQ(f->holding.load(), 1u) << "victim never held the message";
    KillAndExpectRedelivery(*q, victim, kMsg);
    ::kill(hog, SIGKILL);
    EXPECT_EQ(WaitChildFor(hog, 10000ms), 128 + SIGKILL);
  }
  EXPECT_FALSE(ShmExists(name));
  testing::FreeScratch(f, 1);
}

TEST(MpmcRecoveryTest, KilledWhileExiting) {
  const std::string name = UniqueShmName("mpmc-exiting");
  Flags* f = testing::SharedScratch<Flags>(1);
  ASSERT_NE(f, nullptr);
  new (f) Flags();
  {
    auto q = MpmcQueue::Create(name, 8, 64);
    ASSERT_TRUE(q) << q.error().message();
    auto tx = q->Producer();
    ASSERT_TRUE(tx);
    const char kMsg[] = "held by an exiting consumer";
    ASSERT_TRUE(tx->try_push(std::as_bytes(std::span(kMsg, sizeof(kMsg) - 1))));
    const pid_t victim = ForkChild([&] {
      return HoldMessage(name, f, [] {
        // Page-table and page teardown of this takes the kernel a while after SIGKILL.
        constexpr size_t kBig = size_t{768} << 20;
        void* p = ::mmap(nullptr, kBig, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return false;
        std::memset(p, 1, kBig);
        return true;
      });
    });
    const auto give_up = std::chrono::steady_clock::now() + 20s;
    while (f->holding.load() == 0 && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(1ms);
    }
    ASSERT_EQ(f->holding.load(), 1u) << "victim never held the message";
    KillAndExpectRedelivery(*q, victim, kMsg);
  }
  EXPECT_FALSE(ShmExists(name));
  testing::FreeScratch(f, 1);
}

}  // namespace
}  // namespace shmlink
