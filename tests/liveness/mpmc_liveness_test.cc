// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// MPMC queue liveness from the kernel's OFD holder locks (mpmc_layout.h LIVENESS), with real
// processes: where pid + start time from /proc went wrong (exec, PID namespaces, a zombie
// leader, a hidden /proc, fd exhaustion), and what happens to a LIVE handle that is judged
// dead because its token fd was closed behind its back (it gets kRevoked; it never completes
// a release under its successor).
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/kill_on_write.h"
#include "tests/liveness/namespaces.h"
#include "tests/test_util.h"

#include <shmlink/holder_lock.h>
#include <shmlink/mpmc_queue.h>

namespace shmlink {
namespace {

using testing::Eventually;

using namespace std::chrono_literals;
using testing::Bytes;
using testing::ForkChild;
using testing::Str;
using testing::UniqueShmName;
using testing::WaitChild;
using testing::WaitChildFor;

// The fds of this process open on `seg`'s file, other than the segment's own.
std::set<int> FdsOnFile(const Segment& seg) { return testing::FdsOnSameFile(seg.fd()); }

// Registers a consumer and returns it with its token fd (the one fd on the segment's file
// that its registration opened), or -1 if that fd cannot be told.
struct Registered {
  Expected<MpmcConsumer> rx = RingErrc::kBadState;
  int token = -1;
};
Registered RegisterConsumer(const MpmcQueue& q) {
  Registered r;
  const std::set<int> before = FdsOnFile(q.segment());
  r.rx = q.Consumer();
  std::vector<int> fresh;
  for (int fd : FdsOnFile(q.segment())) {
    if (before.count(fd) == 0) fresh.push_back(fd);
  }
  if (fresh.size() == 1) r.token = fresh[0];
  return r;
}

// What a buggy program does to a library's fd: closes it behind its back. dup2 of /dev/null
// closes the token (the kernel drops its lock with its last reference) and keeps the number
// taken, so the handle's own eventual close cannot hit an unrelated later fd.
bool CloseBehindItsBack(int fd) {
  const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null < 0) return false;
  const bool ok = ::dup2(null, fd) == fd;
  ::close(null);
  return ok;
}

// A child that attaches to queue `name`, registers a consumer, claims a message, tells
// `holding` and sleeps until it is killed (exit 2: attach failed, 3: no message claimed).
pid_t ForkConsumerHolding(const std::string& name, const testing::Signal& holding) {
  return ForkChild([&]() -> int {
    auto a = MpmcQueue::Attach(name);
    if (!a) return 2;
    auto rx = a->Consumer();
    if (!rx || !rx->try_claim()) return 3;
    holding.Notify();
    for (;;) ::pause();
  });
}

// A consumer A holds a message; its token is closed behind its back, so the kernel says its
// entry's holder is gone. B recovers the entry and gets the message redelivered; A's release
// fails typed (kRevoked), B's span is untouched, and nobody gets the message a third time.
// Before generations/quarantine, B could be handed A's index and adopt the orphan under it:
// A's release then freed B's slot and a producer overwrote B's span.
TEST(MpmcLiveness, ReleaseOfAConsumerJudgedDeadFailsAndNeverFreesItsSuccessorsSlot) {
  const std::string name = UniqueShmName("mpmc-revoke");
  auto q = MpmcQueue::Create(name, 2, 16);
  ASSERT_TRUE(q) << q.error().message();
  auto tx = q->Producer();
  ASSERT_TRUE(tx);
  ASSERT_TRUE(tx->try_push(Bytes("job")));
  Registered a = RegisterConsumer(*q);
  ASSERT_TRUE(a.rx) << a.rx.error().message();
  ASSERT_GE(a.token, 0) << "could not tell the consumer's token fd";
  auto held = a.rx->try_claim();
  ASSERT_TRUE(held);
  ASSERT_EQ(Str(held->data), "job");
  ASSERT_TRUE(CloseBehindItsBack(a.token));
  EXPECT_EQ(ProbeHolder(q->segment(), a.rx->registry_index()), HolderState::kDead);

  auto b = q->Consumer();
  ASSERT_TRUE(b);
  EXPECT_NE(b->registry_index(), a.rx->registry_index());
  auto m = b->try_claim();  // its slow path recovers A's entry and adopts the orphan
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_TRUE(m->redelivered);
  EXPECT_EQ(Str(m->data), "job");
  // A new handle is not given A's quarantined index while A's message may still be around.
  auto c = q->Consumer();
  ASSERT_TRUE(c);
  EXPECT_NE(c->registry_index(), a.rx->registry_index());

  auto released = a.rx->release();
  ASSERT_FALSE(released) << "a revoked consumer's release completed";
  EXPECT_EQ(released.error(), RingErrc::kRevoked);
  // B's claim is intact: a producer cannot take the slot (queue of 2: the other is free).
  ASSERT_TRUE(tx->try_push(Bytes("one")));
  auto full = tx->try_push(Bytes("two"));
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error(), RingErrc::kWouldBlock);
  EXPECT_EQ(Str(m->data), "job");
  // A can do nothing more.
  auto again = a.rx->try_claim();
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), RingErrc::kRevoked);
  ASSERT_TRUE(b->release());
  std::vector<std::byte> buf(16);
  auto next = c->try_pop(buf);
  ASSERT_TRUE(next);
  EXPECT_EQ(Str({buf.data(), next->size}), "one");
  EXPECT_FALSE(next->redelivered);
  auto none = c->try_claim();
  ASSERT_FALSE(none) << "a message was delivered a third time";
  EXPECT_EQ(none.error(), RingErrc::kWouldBlock);
  const MpmcStats st = q->stats();
  EXPECT_EQ(st.redelivered, 1u);
  EXPECT_EQ(st.orphans, 0u);
  EXPECT_EQ(st.size, 0u);
}

// A handle whose entry was recovered before it claimed (rule 1 of mpmc_layout.h): its claim
// CAS succeeds, the generation check right after catches it, and the message goes to the
// others (flagged redelivered: the revoked handle may have looked at it).
TEST(MpmcLiveness, ClaimOfARecoveredHandleIsGivenUp) {
  const std::string name = UniqueShmName("mpmc-revoke2");
  auto q = MpmcQueue::Create(name, 4, 16);
  ASSERT_TRUE(q);
  auto tx = q->Producer();
  ASSERT_TRUE(tx);
  Registered a = RegisterConsumer(*q);
  ASSERT_TRUE(a.rx);
  ASSERT_GE(a.token, 0);
  auto pa = q->Producer();
  ASSERT_TRUE(pa);
  ASSERT_TRUE(CloseBehindItsBack(a.token));
  EXPECT_EQ(q->RecoverDead(), 1u);
  ASSERT_TRUE(tx->try_push(Bytes("job")));
  auto lost = a.rx->try_claim();
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.error(), RingErrc::kRevoked);
  auto b = q->Consumer();
  ASSERT_TRUE(b);
  auto m = b->try_claim();
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(Str(m->data), "job");
  EXPECT_TRUE(m->redelivered);
  ASSERT_TRUE(b->release());
  EXPECT_EQ(q->stats().orphans, 0u);
}

// A claimant killed right after its claim CAS while its entry was free (it had been revoked
// and recovered, so nobody names it any more): its Reading stamp names an entry with owner 0.
// The consumers' slow path takes it away (orphan, redelivered) instead of being wedged.
TEST(MpmcLiveness, ClaimOfAFreeEntryDoesNotWedgeTheQueue) {
  const std::string name = UniqueShmName("mpmc-stray");
  auto q = MpmcQueue::Create(name, 4, 16);
  ASSERT_TRUE(q);
  auto tx = q->Producer();
  ASSERT_TRUE(tx);
  ASSERT_TRUE(tx->try_push(Bytes("job")));
  const MpmcView v = MpmcViewOf(q->segment(), *ValidateMpmcSegment(q->segment()));
  auto out = testing::RunTraced(
      [&]() -> int {
        Registered a = RegisterConsumer(*q);
        if (!a.rx || a.token < 0) return 2;
        if (!CloseBehindItsBack(a.token)) return 3;
        if (q->RecoverDead() != 1) return 4;  // A's entry: recovered, owner 0
        const uint32_t idx = a.rx->registry_index();
        if (v.registry[idx].owner.load() != 0) return 5;
        if (!testing::KillOnWrite(&v.slot(0)->stamp, ~uint64_t{0},
                                  MakeStamp(0, idx, kSlotReading))) {
          return 6;
        }
        (void)a.rx->try_claim();  // killed right after the claim CAS
        return 7;
      },
      10000ms);
  if (out.kind == testing::TracedOutcome::kExited && out.code == 6) {
    GTEST_SKIP() << "no hardware watchpoint here";
  }
  ASSERT_EQ(out.kind, testing::TracedOutcome::kKilledAtPoint)
      << testing::TracedOutcomeName(out.kind) << " " << out.code;
  EXPECT_EQ(StampState(out.word), kSlotReading);
  auto b = q->Consumer();
  ASSERT_TRUE(b);
  auto m = b->claim(WaitOptions::WithTimeout(10s));
  ASSERT_TRUE(m) << m.error().message() << ": wedged behind a claim of a free entry";
  EXPECT_EQ(Str(m->data), "job");
  EXPECT_TRUE(m->redelivered);
  ASSERT_TRUE(b->release());
}

// exec keeps pid and start time; the token is O_CLOEXEC, so the exec'd image holds no entry:
// its held message is redelivered while the process still runs.
TEST(MpmcLiveness, ExecOfARegisteredHandlesProcessRecoversItsEntry) {
  const std::string name = UniqueShmName("mpmc-exec");
  auto q = MpmcQueue::Create(name, 4, 16);
  ASSERT_TRUE(q);
  auto tx = q->Producer();
  ASSERT_TRUE(tx);
  ASSERT_TRUE(tx->try_push(Bytes("job")));
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t child = ForkChild([&]() -> int {
    auto a = MpmcQueue::Attach(name);
    if (!a) return 2;
    auto rx = a->Consumer();
    if (!rx || !rx->try_claim()) return 3;
    ::dup2(pipefd[1], 3);  // not CLOEXEC: the new image reports on it once it runs
    ::execl("/bin/sh", "sh", "-c", "printf x >&3; exec sleep 60", static_cast<char*>(nullptr));
    return 4;
  });
  ::close(pipefd[1]);
  char c = 0;
  ASSERT_EQ(::read(pipefd[0], &c, 1), 1) << "the exec'd image never ran";
  ::close(pipefd[0]);
  EXPECT_FALSE(testing::HasExited(child));
  auto rx = q->Consumer();
  ASSERT_TRUE(rx);
  auto m = rx->claim(WaitOptions::WithTimeout(10s));
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_TRUE(m->redelivered);
  EXPECT_EQ(Str(m->data), "job");
  ASSERT_TRUE(rx->release());
  EXPECT_FALSE(testing::HasExited(child));  // recovered while the process lives
  ::kill(child, SIGKILL);
  EXPECT_EQ(WaitChild(child), 128 + SIGKILL);
  EXPECT_EQ(q->stats().consumers, 1u);
}

// A consumer in another PID namespace (pid 1 there; to /proc here, pid 1 is our init): alive
// while it lives, recovered once it is killed from the root namespace.
TEST(MpmcLiveness, HolderInAnotherPidNamespace) {
  const std::string name = UniqueShmName("mpmc-pidns");
  auto q = MpmcQueue::Create(name, 4, 16);
  ASSERT_TRUE(q);
  auto tx = q->Producer();
  ASSERT_TRUE(tx);
  ASSERT_TRUE(tx->try_push(Bytes("job")));
  auto* shared = testing::NewShared<testing::PidNsShared>();
  testing::Signal ready;
  pid_t mid = 0;
  const bool started = testing::StartInPidNamespace(
      [&]() -> int {
        auto a = MpmcQueue::Attach(name);
        auto rx = a ? a->Consumer() : Expected<MpmcConsumer>(RingErrc::kBadState);
        const bool holding = rx && rx->try_claim();
        shared->status.store(holding ? 1 : 3);
        ready.Notify();
        for (;;) ::pause();
      },
      ready, shared, &mid);
  if (!started) {
    testing::DeleteShared(shared);
    GTEST_SKIP() << "unshare(CLONE_NEWPID) not permitted here";
  }
  ASSERT_EQ(shared->status.load(), 1);
  EXPECT_EQ(shared->ns_pid.load(), 1);
  auto rx = q->Consumer();
  ASSERT_TRUE(rx);
  EXPECT_EQ(q->RecoverDead(), 0u) << "a live holder in another PID namespace was recovered";
  auto none = rx->claim(WaitOptions::WithTimeout(100ms));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error(), RingErrc::kTimedOut);
  EXPECT_EQ(q->stats().consumers, 2u);
  ::kill(shared->holder.load(), SIGKILL);
  EXPECT_EQ(WaitChild(mid), 0);  // it reaped the holder
  auto m = rx->claim(WaitOptions::WithTimeout(10s));
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_TRUE(m->redelivered);
  EXPECT_EQ(Str(m->data), "job");
  ASSERT_TRUE(rx->release());
  testing::DeleteShared(shared);
}

// The thread-group leader exits (a zombie in /proc) while another thread holds a consumer
// with a message: never recovered while that thread lives.
TEST(MpmcLiveness, ZombieLeaderWithAConsumerThreadIsNeverRecovered) {
  const std::string name = UniqueShmName("mpmc-zombie");
  auto q = MpmcQueue::Create(name, 4, 16);
  ASSERT_TRUE(q);
  auto tx = q->Producer();
  ASSERT_TRUE(tx);
  ASSERT_TRUE(tx->try_push(Bytes("job")));
  testing::Signal ready;
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::thread([&] {
      auto a = MpmcQueue::Attach(name);
      auto rx = a ? a->Consumer() : Expected<MpmcConsumer>(RingErrc::kBadState);
      if (!rx || !rx->try_claim()) ::_exit(3);
      ready.Notify();
      for (;;) ::pause();
    }).detach();
    ::syscall(SYS_exit, 0);  // this thread only: the leader becomes a zombie
  }
  ASSERT_TRUE(ready.Wait());
  ASSERT_TRUE(Eventually([&] {
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE* f = std::fopen(path, "r");
    if (f == nullptr) return false;
    char buf[512] = {};
    const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
    std::fclose(f);
    const std::string s(buf, n);
    const auto p = s.rfind(')');
    return p != std::string::npos && p + 2 < s.size() && s[p + 2] == 'Z';
  }));
  auto rx = q->Consumer();
  ASSERT_TRUE(rx);
  EXPECT_EQ(q->RecoverDead(), 0u) << "a live process with a zombie leader was recovered";
  auto none = rx->claim(WaitOptions::WithTimeout(100ms));
  ASSERT_FALSE(none) << "the live thread's message was redelivered";
  EXPECT_EQ(none.error(), RingErrc::kTimedOut);
  ::kill(pid, SIGKILL);
  EXPECT_EQ(WaitChild(pid), 128 + SIGKILL);
  auto m = rx->claim(WaitOptions::WithTimeout(10s));
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_TRUE(m->redelivered);
  ASSERT_TRUE(rx->release());
}

// The checker cannot read /proc (its own mount namespace with a tmpfs over /proc): it still
// leaves a live holder alone and recovers a dead one. /proc plays no part in the decision.
TEST(MpmcLiveness, CheckerWithProcHiddenIsStillRight) {
  const std::string name = UniqueShmName("mpmc-noproc");
  auto q = MpmcQueue::Create(name, 4, 16);
  ASSERT_TRUE(q);
  auto tx = q->Producer();
  ASSERT_TRUE(tx);
  ASSERT_TRUE(tx->try_push(Bytes("job")));
  // The holder: a consumer holding the message until it is killed.
  testing::Signal holding;
  const pid_t holder = ForkConsumerHolding(name, holding);
  ASSERT_TRUE(holding.Wait());
  struct Shared {
    std::atomic<int> step{0};  // child: 1 checked the live holder; parent: 2 holder killed
    std::atomic<int> live_recovered{-1};
    std::atomic<int> result{0};
  };
  auto* shared = testing::NewShared<Shared>();
  const pid_t checker = ForkChild([&]() -> int {
    if (!testing::HideProc()) return 10;  // not permitted: skip
    auto a = MpmcQueue::Attach(name);
    if (!a) return 2;
    auto rx = a->Consumer();  // registering needs no /proc either
    if (!rx) return 3;
    shared->live_recovered.store(static_cast<int>(a->RecoverDead()));
    shared->step.store(1);
    while (shared->step.load() != 2) ::usleep(1000);
    auto m = rx->claim(WaitOptions::WithTimeout(10s));
    if (!m) return 4;
    if (!m->redelivered || Str(m->data) != "job") return 5;
    return rx->release() ? 0 : 6;
  });
  ASSERT_TRUE(Eventually([&] { return shared->step.load() == 1 || testing::HasExited(checker); }));
  if (shared->step.load() != 1) {
    const int rc = WaitChild(checker);
    ::kill(holder, SIGKILL);
    WaitChild(holder);
    testing::DeleteShared(shared);
    if (rc == 10) GTEST_SKIP() << "no private mount namespace with /proc hidden here";
    FAIL() << "checker failed early: " << rc;
  }
  EXPECT_EQ(shared->live_recovered.load(), 0) << "a live holder was recovered";
  ::kill(holder, SIGKILL);
  EXPECT_EQ(WaitChild(holder), 128 + SIGKILL);
  shared->step.store(2);
  EXPECT_EQ(WaitChildFor(checker, 20000ms), 0);
  testing::DeleteShared(shared);
}

// Out of fds: a registration fails with EMFILE (it needs a token); a recovery pass leaves a
// live holder alone and, with its holder dead, the kernel's answer is still right - it
// recovers once it has an fd for the entry's lock.
TEST(MpmcLiveness, OutOfFdsRegistrationFailsAndCheckerStaysRight) {
  const std::string name = UniqueShmName("mpmc-emfile");
  auto q = MpmcQueue::Create(name, 4, 16);
  ASSERT_TRUE(q);
  auto tx = q->Producer();
  ASSERT_TRUE(tx);
  ASSERT_TRUE(tx->try_push(Bytes("job")));
  testing::Signal holding;
  const pid_t holder = ForkConsumerHolding(name, holding);
  ASSERT_TRUE(holding.Wait());
  std::error_code register_error;
  size_t live_recovered = 99, dead_recovered = 99;
  HolderState dead_state = HolderState::kUnknown;
  const uint32_t holder_idx = 1;  // tx took entry 0, the holder the next free one
  // UBSan's vptr check needs an fd (a pipe) the first time it meets a class: let it meet
  // system_category's here, before the library compares such an error_code under EMFILE.
  static volatile bool warm =
      std::error_code(EMFILE, std::system_category()) == RingErrc::kRoleTaken;
  (void)warm;
  {
    testing::FdExhaustion exhausted;  // results checked after: sanitizers need fds
    auto rx = q->Consumer();
    if (!rx) register_error = rx.error();
    live_recovered = q->RecoverDead();
    ::kill(holder, SIGKILL);
    while (!testing::HasExited(holder)) ::usleep(1000);
    dead_state = ProbeHolder(q->segment(), holder_idx);
    dead_recovered = q->RecoverDead();  // needs an fd for the lock: none
  }
  EXPECT_EQ(register_error.value(), EMFILE);
  EXPECT_EQ(live_recovered, 0u);
  EXPECT_EQ(dead_state, HolderState::kDead);
  EXPECT_EQ(dead_recovered, 0u);
  EXPECT_EQ(WaitChild(holder), 128 + SIGKILL);
  EXPECT_EQ(q->RecoverDead(), 1u);
  auto rx = q->Consumer();
  ASSERT_TRUE(rx);
  auto m = rx->try_claim();
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->redelivered);
  ASSERT_TRUE(rx->release());
}

// A consumer killed inside its futex wait leaves its sleeper bit set (a count stayed raised
// forever, and every later publish paid for the phantom sleeper: a load, and the first one a
// futex_wake). Recovery of its entry clears the bit: the next publish makes no wake call.
TEST(MpmcLiveness, SleeperKilledInItsFutexWaitIsForgottenByRecovery) {
  const std::string name = UniqueShmName("mpmc-sleeper");
  auto q = MpmcQueue::Create(name, 4, 16);
  ASSERT_TRUE(q);
  const MpmcView v = MpmcViewOf(q->segment(), *ValidateMpmcSegment(q->segment()));
  const pid_t sleeper = ForkChild([&]() -> int {
    auto a = MpmcQueue::Attach(name);
    if (!a) return 2;
    auto rx = a->Consumer();
    if (!rx) return 3;
    (void)rx->claim(WaitOptions::Sleep(std::chrono::hours(1)));  // sleeps until killed
    return 4;
  });
  ASSERT_TRUE(Eventually([&] { return v.control->not_empty.SleeperCount() == 1; }));
  ::kill(sleeper, SIGKILL);
  EXPECT_EQ(WaitChild(sleeper), 128 + SIGKILL);
  EXPECT_EQ(v.control->not_empty.SleeperCount(), 1u);  // died asleep: nobody retired it
  EXPECT_EQ(q->RecoverDead(), 1u);
  EXPECT_EQ(v.control->not_empty.SleeperCount(), 0u);
  EXPECT_FALSE(v.control->not_empty.HasSleepers());
  auto tx = q->Producer();
  ASSERT_TRUE(tx);
  ASSERT_TRUE(tx->try_push(Bytes("job")));
  const uint32_t idx = tx->registry_index();
  EXPECT_EQ(v.stats[idx].by_role[RoleStatsIndex(kRoleProducer)].wake_calls.load(), 0u)
      << "a publish woke a sleeper that had died";
}

// Entries >= 60 sleep in the high words of the sleeper set (behind a sticky summary bit):
// a consumer with such an index, blocked with no periodic wake-up (liveness_check 1 h), is
// woken by a publish from another process - a lost wake-up would hang here - and when it is
// killed asleep, recovery clears its bit.
TEST(MpmcLiveness, HighIndexSleeperIsWokenAndForgotten) {
  const std::string name = UniqueShmName("mpmc-highsleeper");
  auto q = MpmcQueue::Create(name, 4, 16);
  ASSERT_TRUE(q);
  const MpmcView v = MpmcViewOf(q->segment(), *ValidateMpmcSegment(q->segment()));
  std::vector<MpmcConsumer> fillers;
  for (int i = 0; i < 70; ++i) {
    auto c = q->Consumer();
    ASSERT_TRUE(c);
    fillers.push_back(std::move(*c));
  }
  auto rx = q->Consumer();
  ASSERT_TRUE(rx);
  ASSERT_GE(rx->registry_index(), MpmcEvent::kLowEntries);
  WaitOptions forever = WaitOptions::Sleep();
  forever.liveness_check = std::chrono::hours(1);
  std::thread waiter([&] {
    auto m = rx->claim(forever);
    EXPECT_TRUE(m) << m.error().message();
    if (m) {
      EXPECT_EQ(Str(m->data), "wake");
      EXPECT_TRUE(rx->release());
    }
  });
  ASSERT_TRUE(Eventually([&] { return v.control->not_empty.SleeperCount() == 1; }));
  const pid_t pusher = ForkChild([&]() -> int {
    auto a = MpmcQueue::Attach(name);
    auto tx = a ? a->Producer() : Expected<MpmcProducer>(RingErrc::kBadState);
    return tx && tx->try_push(Bytes("wake")) ? 0 : 2;
  });
  EXPECT_EQ(WaitChild(pusher), 0);
  waiter.join();
  EXPECT_EQ(v.control->not_empty.SleeperCount(), 0u);
  fillers.clear();

  // Killed asleep with a high index: recovery clears the bit.
  const pid_t sleeper = ForkChild([&]() -> int {
    auto a = MpmcQueue::Attach(name);
    if (!a) return 2;
    std::vector<MpmcConsumer> mine;
    for (int i = 0; i < 70; ++i) {
      auto c = a->Consumer();
      if (!c) return 3;
      mine.push_back(std::move(*c));
    }
    (void)mine.back().claim(forever);  // sleeps until killed
    return 4;
  });
  ASSERT_TRUE(Eventually([&] { return v.control->not_empty.SleeperCount() == 1; }));
  ::kill(sleeper, SIGKILL);
  EXPECT_EQ(WaitChild(sleeper), 128 + SIGKILL);
  EXPECT_EQ(v.control->not_empty.SleeperCount(), 1u);
  EXPECT_EQ(q->RecoverDead(), 70u);
  EXPECT_EQ(v.control->not_empty.SleeperCount(), 0u);
  EXPECT_FALSE(v.control->not_empty.HasSleepers());
}

// The brief's exact sequence: A's entry is recovered first, then B registers. Without the
// quarantine B got A's (lowest free) index, adopted A's orphan under it, and A's release then
// freed B's slot. The quarantine ends once dequeue_pos passed the orphan's position + slots:
// the index is handed out again, and A's stale release still fails.
TEST(MpmcLiveness, RecoveredIndexIsQuarantinedUntilItsOrphanIsGone) {
  const std::string name = UniqueShmName("mpmc-quarantine");
  auto q = MpmcQueue::Create(name, 4, 16);
  ASSERT_TRUE(q);
  auto tx = q->Producer();
  ASSERT_TRUE(tx);
  ASSERT_TRUE(tx->try_push(Bytes("job")));
  Registered a = RegisterConsumer(*q);
  ASSERT_TRUE(a.rx);
  ASSERT_GE(a.token, 0);
  const uint32_t a_idx = a.rx->registry_index();
  ASSERT_TRUE(a.rx->try_claim());
  ASSERT_TRUE(CloseBehindItsBack(a.token));
  EXPECT_EQ(q->RecoverDead(), 1u);
  EXPECT_EQ(q->stats().orphans, 1u);
  auto b = q->Consumer();
  ASSERT_TRUE(b);
  EXPECT_NE(b->registry_index(), a_idx) << "a quarantined index was handed out";
  auto m = b->try_claim();
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->redelivered);
  auto stale = a.rx->release();
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error(), RingErrc::kRevoked);
  EXPECT_EQ(Str(m->data), "job");
  ASSERT_TRUE(b->release());
  // Traffic moves dequeue_pos past the orphan's position + slot_count: the index is free again.
  std::vector<std::byte> buf(16);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(tx->try_push(Bytes("more")));
    ASSERT_TRUE(b->try_pop(buf));
  }
  auto c = q->Consumer();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->registry_index(), a_idx) << "the quarantine never ended";
  ASSERT_TRUE(tx->try_push(Bytes("c's")));
  auto mc = c->try_claim();
  ASSERT_TRUE(mc);
  auto late = a.rx->release();  // A is still around, with C under its old index
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error(), RingErrc::kBadState);  // nothing held any more: no CAS at all
  EXPECT_EQ(Str(mc->data), "c's");
  ASSERT_TRUE(c->release());
}

}  // namespace
}  // namespace shmlink
