// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Recovery of a process that was SIGKILLed while it held a claim but has not finished
// dying. Liveness is the kernel's: a registry entry is recovered once the kernel dropped
// its holder's OFD lock (the dying process's files closed, holder_lock.h), and never
// before - a killed process that still holds its files may yet run (a ptrace stop), and
// then holds its claims.
//  * KilledButNotYetScheduled: the victim runs SCHED_IDLE on a CPU where another process
//    spins, so after kill() it waits (hundreds of ms) for a CPU with SIGKILL pending; a
//    blocked consumer must get its message, redelivered, once it has died.
//  * KilledWhileExiting: the victim has a large populated address space, so the kernel
//    takes long to tear it down (exit_mm precedes exit_files); same expectation.
//  * KilledAndStoppedBeforeExiting (producer side): the victim is held in a
//    PTRACE_EVENT_EXIT stop, inside do_exit before its files are closed. Its claim must NOT
//    be abandoned while it is held there (it still holds its lock: a tracer could even let
//    it write); once it is let go, a blocked pop gets past the claim.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"

#include <shmlink/mpmc_queue.h>

namespace shmlink {
namespace {

using namespace std::chrono_literals;
using testing::ForkChild;
using testing::ShmExists;
using testing::Str;
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

// Kills `victim` (which holds the queue's only message) and checks that a blocked consumer
// gets it, redelivered, once the victim is dead.
void KillAndExpectRedelivery(MpmcQueue& q, pid_t victim, const std::string& payload) {
  auto rx = q.Consumer();
  ASSERT_TRUE(rx) << rx.error().message();
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  // Blocked: its slow path recovers the victim's entry when the kernel dropped its lock.
  auto m = rx->claim(WaitOptions::WithTimeout(60s));
  ASSERT_TRUE(m) << m.error().message() << ": a SIGKILLed consumer's message was never redelivered";
  EXPECT_TRUE(m->redelivered);
  EXPECT_EQ(Str(m->data), payload);
  ASSERT_TRUE(rx->release());
  EXPECT_EQ(WaitChildFor(victim, 10000ms), 128 + SIGKILL);
  const MpmcStats st = q.stats();
  EXPECT_EQ(st.redelivered, 1u);
  EXPECT_EQ(st.orphans, 0u);
  EXPECT_EQ(st.size, 0u);
  EXPECT_EQ(st.consumers, 1u);  // rx only
}

// Queues `payload` alone on a fresh queue, forks a victim that claims it and runs `prepare`
// (what keeps it from dying quickly), and once the victim holds the message (within
// `give_up`) kills it and expects the message redelivered at once.
template <typename Prepare>
void ExpectRedeliveryFromDyingVictim(const std::string& tag, const std::string& payload,
                                     std::chrono::seconds give_up, Prepare prepare) {
  const std::string name = UniqueShmName(tag);
  Flags* f = testing::NewShared<Flags>();
  {
    auto q = MpmcQueue::Create(name, 8, 64);
    ASSERT_TRUE(q) << q.error().message();
    auto tx = q->Producer();
    ASSERT_TRUE(tx);
    ASSERT_TRUE(tx->try_push(testing::Bytes(payload)));
    const pid_t victim = ForkChild([&] { return HoldMessage(name, f, prepare); });
    const auto deadline = std::chrono::steady_clock::now() + give_up;
    while (f->holding.load() == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
    if (f->holding.load() != 1u) {
      ::kill(victim, SIGKILL);
      testing::WaitChild(victim);
    }
    ASSERT_EQ(f->holding.load(), 1u) << "victim never held the message";
    KillAndExpectRedelivery(*q, victim, payload);
  }
  EXPECT_FALSE(ShmExists(name));
  testing::DeleteShared(f);
}

TEST(MpmcRecoveryTest, KilledButNotYetScheduled) {
  // The hog keeps `cpu` busy, so the SCHED_IDLE victim hardly ever runs there.
  const int cpu = SomeAllowedCpu();
  const pid_t hog = ForkChild([cpu] {
    if (!PinTo(cpu)) return 2;
    for (;;) asm volatile("" ::: "memory");
  });
  ExpectRedeliveryFromDyingVictim("mpmc-dying", "held by a dying consumer", 10s, [cpu] {
    sched_param sp{};
    return PinTo(cpu) && ::sched_setscheduler(0, SCHED_IDLE, &sp) == 0;
  });
  ::kill(hog, SIGKILL);
  EXPECT_EQ(WaitChildFor(hog, 10000ms), 128 + SIGKILL);
}

TEST(MpmcRecoveryTest, KilledWhileExiting) {
  ExpectRedeliveryFromDyingVictim("mpmc-exiting", "held by an exiting consumer", 20s, [] {
    // Page-table and page teardown of this takes the kernel a while after SIGKILL.
    // MAP_POPULATE, not memset: the kernel faults the pages in, so a sanitizer's memset
    // interceptor (TSan: shadow updates for every byte) does not eat the setup budget.
    constexpr size_t kBig = size_t{768} << 20;
    void* p = ::mmap(nullptr, kBig, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    return p != MAP_FAILED;
  });
}

TEST(MpmcRecoveryTest, KilledAndStoppedBeforeExiting) {
  const std::string name = UniqueShmName("mpmc-exitstop");
  auto q = MpmcQueue::Create(name, 8, 32);
  ASSERT_TRUE(q) << q.error().message();
  testing::Signal ready;
  const pid_t victim = ForkChild([&] {
    auto a = MpmcQueue::Attach(name);
    if (!a) return 2;
    auto tx = a->Producer();
    auto span = tx ? tx->try_claim(5) : Expected<std::span<std::byte>>(RingErrc::kBadState);
    if (!span) return 3;
    std::memcpy(span->data(), "dead!", 5);
    ready.Notify();
    for (;;) ::pause();
  });
  ASSERT_TRUE(ready.Wait());
  auto tx = q->Producer();
  auto rx = q->Consumer();
  ASSERT_TRUE(tx && rx);
  ASSERT_TRUE(tx->try_push(testing::Bytes("after")));
  if (::ptrace(PTRACE_SEIZE, victim, nullptr, PTRACE_O_TRACEEXIT) != 0) {
    const int err = errno;
    ::kill(victim, SIGKILL);
    EXPECT_EQ(WaitChildFor(victim, 10000ms), 128 + SIGKILL);
    GTEST_SKIP() << "ptrace not permitted here: " << std::strerror(err);
  }
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(victim, &status, 0), victim);
  // Stopped inside do_exit, before its files are closed: the window under test.
  ASSERT_TRUE(WIFSTOPPED(status) && (status >> 16) == PTRACE_EVENT_EXIT) << std::hex << status;
  // It still holds its lock: nothing is recovered, the claim blocks the consumers.
  EXPECT_EQ(q->RecoverDead(), 0u) << "a process that still holds its files was recovered";
  std::vector<std::byte> buf(32);
  auto blocked = rx->pop(buf, WaitOptions::WithTimeout(300ms));
  ASSERT_FALSE(blocked) << "got past a claim whose holder still holds its lock";
  EXPECT_EQ(blocked.error(), RingErrc::kTimedOut);
  // Let it finish dying (the kernel resumes the exit: SIGKILL cannot be cancelled).
  ASSERT_EQ(::ptrace(PTRACE_CONT, victim, nullptr, nullptr), 0);
  auto r = rx->pop(buf, WaitOptions::WithTimeout(60s));
  ASSERT_TRUE(r) << r.error().message() << ": the victim's claim was never abandoned";
  EXPECT_EQ(Str({buf.data(), r->size}), "after");
  EXPECT_EQ(WaitChildFor(victim, 10000ms), 128 + SIGKILL);
  const MpmcStats st = q->stats();
  EXPECT_EQ(st.abandoned, 1u);
  EXPECT_EQ(st.pops, 1u);
  EXPECT_EQ(st.size, 0u);
  EXPECT_EQ(st.producers, 1u);
}

}  // namespace
}  // namespace shmlink
