// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// HolderLock / ProbeHolder with real processes: the kernel's word on whether a slot's holder
// lives, in the cases where pid + start time from /proc went wrong (fd exhaustion, exec,
// fork, PID namespaces, a zombie thread-group leader).
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/liveness/namespaces.h"
#include "tests/test_util.h"

#include <shmlink/holder_lock.h>
#include <shmlink/segment.h>

namespace shmlink {
namespace {

using testing::Eventually;

using std::chrono::milliseconds;

constexpr uint64_t kSlot = 7;

Segment MakeSegment(const std::string& tag) {
  auto seg = Segment::Create(testing::UniqueShmName(tag), 4096, UnlinkPolicy::kUnlinkOnDestroy);
  if (!seg) ADD_FAILURE() << seg.error().message();
  return std::move(*seg);
}

// A child that takes `slot` of `seg`, says so on `ready`, then runs `after` (default: sleeps
// until killed).
pid_t ForkHolder(const Segment& seg, uint64_t slot, const testing::Signal& ready,
                 const std::function<int(HolderLock&)>& after = nullptr) {
  return testing::ForkChild([&]() -> int {
    auto lock = HolderLock::Acquire(seg, slot);
    if (!lock) return 3;
    if (after) return after(*lock);
    ready.Notify();
    for (;;) ::pause();
  });
}

TEST(HolderLock, FreeSlotIsDeadAndCanBeTaken) {
  Segment seg = MakeSegment("hl-free");
  EXPECT_EQ(ProbeHolder(seg, kSlot), HolderState::kDead);
  auto lock = HolderLock::Acquire(seg, kSlot);
  ASSERT_TRUE(lock) << lock.error().message();
  EXPECT_TRUE(lock->owns());
  EXPECT_EQ(lock->slot(), kSlot);
  // Held in this very process: still seen (the probe goes through the segment's own OFD).
  EXPECT_EQ(ProbeHolder(seg, kSlot), HolderState::kAlive);
  EXPECT_EQ(ProbeHolder(seg, kSlot + 1), HolderState::kDead);
  // A second claim, even from the same process, is refused.
  auto again = HolderLock::Acquire(seg, kSlot);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), make_error_code(RingErrc::kRoleTaken));
  lock->Release();
  EXPECT_FALSE(lock->owns());
  EXPECT_EQ(ProbeHolder(seg, kSlot), HolderState::kDead);
  EXPECT_TRUE(HolderLock::Acquire(seg, kSlot));
}

TEST(HolderLock, ProbeAnyHolderSeesAnySlotOfTheRange) {
  Segment seg = MakeSegment("hl-any");
  EXPECT_EQ(ProbeAnyHolder(seg, 0, 256), HolderState::kDead);
  testing::Signal ready;
  pid_t pid = ForkHolder(seg, kSlot, ready);
  ASSERT_TRUE(ready.Wait());
  EXPECT_EQ(ProbeAnyHolder(seg, 0, 256), HolderState::kAlive);
  EXPECT_EQ(ProbeAnyHolder(seg, kSlot, 1), HolderState::kAlive);
  EXPECT_EQ(ProbeAnyHolder(seg, 0, kSlot), HolderState::kDead);        // ends just before it
  EXPECT_EQ(ProbeAnyHolder(seg, kSlot + 1, 100), HolderState::kDead);  // starts just after
  {
    auto creator = HolderLock::Acquire(seg, kCreatorHolderSlot);  // the last slot
    ASSERT_TRUE(creator) << creator.error().message();
    EXPECT_EQ(ProbeAnyHolder(seg, kCreatorHolderSlot, 1), HolderState::kAlive);
  }
  EXPECT_EQ(ProbeAnyHolder(seg, kCreatorHolderSlot, 1), HolderState::kDead);
  // Bad ranges decide nothing.
  EXPECT_EQ(ProbeAnyHolder(seg, 0, 0), HolderState::kUnknown);
  EXPECT_EQ(ProbeAnyHolder(seg, kCreatorHolderSlot, 2), HolderState::kUnknown);
  ::kill(pid, SIGKILL);
  EXPECT_EQ(testing::WaitChild(pid), 128 + SIGKILL);
  EXPECT_EQ(ProbeAnyHolder(seg, 0, 256), HolderState::kDead);
}

TEST(HolderLock, MoveTransfersAndDestructionReleases) {
  Segment seg = MakeSegment("hl-move");
  {
    auto lock = HolderLock::Acquire(seg, kSlot);
    ASSERT_TRUE(lock);
    HolderLock moved = std::move(*lock);
    EXPECT_FALSE(lock->owns());
    EXPECT_TRUE(moved.owns());
    EXPECT_EQ(ProbeHolder(seg, kSlot), HolderState::kAlive);
    HolderLock other;
    other = std::move(moved);
    EXPECT_EQ(ProbeHolder(seg, kSlot), HolderState::kAlive);
  }
  EXPECT_EQ(ProbeHolder(seg, kSlot), HolderState::kDead);
}

TEST(HolderLock, BadInputIsUnknownOrInvalid) {
  Segment none;
  EXPECT_EQ(ProbeHolder(none, kSlot), HolderState::kUnknown);
  EXPECT_EQ(HolderLock::Acquire(none, kSlot).error(), make_error_code(RingErrc::kInvalidArgument));
  Segment seg = MakeSegment("hl-bad");
  EXPECT_EQ(ProbeHolder(seg, kMaxHolderSlots), HolderState::kUnknown);
  EXPECT_EQ(HolderLock::Acquire(seg, kMaxHolderSlots).error(),
            make_error_code(RingErrc::kInvalidArgument));
  EXPECT_TRUE(HolderLock::Acquire(seg, kMaxHolderSlots - 1));
}

TEST(HolderLock, OtherProcessAliveThenKill9IsDeadAtOnce) {
  Segment seg = MakeSegment("hl-kill");
  testing::Signal ready;
  pid_t pid = ForkHolder(seg, kSlot, ready);
  ASSERT_TRUE(ready.Wait());
  EXPECT_EQ(ProbeHolder(seg, kSlot), HolderState::kAlive);
  auto taken = HolderLock::Acquire(seg, kSlot);
  ASSERT_FALSE(taken);
  EXPECT_EQ(taken.error(), make_error_code(RingErrc::kRoleTaken));
  ::kill(pid, SIGKILL);
  // Exited (a zombie, not yet reaped): its files are closed, the lock is gone.
  ASSERT_TRUE(Eventually([&] { return testing::HasExited(pid); }));
  EXPECT_EQ(ProbeHolder(seg, kSlot), HolderState::kDead);
  EXPECT_TRUE(HolderLock::Acquire(seg, kSlot));
  EXPECT_EQ(testing::WaitChild(pid), 128 + SIGKILL);
}

// A memfd segment shared by fork: the holder's segment fd is the very OFD the checker
// probes through; the token (a fresh OFD) is still seen.
TEST(HolderLock, MemfdSegmentSharedByForkIsProbed) {
  auto seg = Segment::CreateAnonymous(4096);
  ASSERT_TRUE(seg);
  testing::Signal ready;
  pid_t pid = ForkHolder(*seg, kSlot, ready);
  ASSERT_TRUE(ready.Wait());
  EXPECT_EQ(ProbeHolder(*seg, kSlot), HolderState::kAlive);
  ::kill(pid, SIGKILL);
  EXPECT_EQ(testing::WaitChild(pid), 128 + SIGKILL);
  EXPECT_EQ(ProbeHolder(*seg, kSlot), HolderState::kDead);
}

using testing::FdExhaustion;

TEST(HolderLock, CheckerOutOfFdsStillSeesTheTruth) {
  Segment seg = MakeSegment("hl-emfile");
  testing::Signal ready;
  pid_t pid = ForkHolder(seg, kSlot, ready);
  ASSERT_TRUE(ready.Wait());
  // Results are checked after the fds are back: sanitizer runtimes need fds of their own.
  int dup_errno = 0;
  HolderState while_alive{}, after_kill{};
  std::error_code claim_error;
  {
    FdExhaustion exhausted;
    if (::dup(0) < 0) dup_errno = errno;
    while_alive = ProbeHolder(seg, kSlot);
    // A claim needs an fd: it fails with EMFILE, it does not take the live holder's slot.
    auto claim = HolderLock::Acquire(seg, kSlot);
    if (!claim) claim_error = claim.error();
    ::kill(pid, SIGKILL);
    while (!testing::HasExited(pid)) ::usleep(1000);
    after_kill = ProbeHolder(seg, kSlot);
  }
  EXPECT_EQ(dup_errno, EMFILE);
  EXPECT_EQ(while_alive, HolderState::kAlive);
  EXPECT_EQ(claim_error.value(), EMFILE);
  EXPECT_EQ(after_kill, HolderState::kDead);
  EXPECT_EQ(testing::WaitChild(pid), 128 + SIGKILL);
}

// execve keeps pid and start time; the new image holds no handle, so the slot is free.
TEST(HolderLock, ExecedHolderIsGone) {
  Segment seg = MakeSegment("hl-exec");
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  testing::Signal ready;
  pid_t pid = ForkHolder(seg, kSlot, ready, [&](HolderLock&) -> int {
    ::dup2(pipefd[1], 3);  // not CLOEXEC: the new image reports on it once it runs
    ::execl("/bin/sh", "sh", "-c", "printf x >&3; exec sleep 60", static_cast<char*>(nullptr));
    return 4;
  });
  ::close(pipefd[1]);
  char c = 0;
  ASSERT_EQ(::read(pipefd[0], &c, 1), 1);  // the exec'd image runs
  ::close(pipefd[0]);
  EXPECT_FALSE(testing::HasExited(pid));
  EXPECT_EQ(ProbeHolder(seg, kSlot), HolderState::kDead);
  EXPECT_TRUE(HolderLock::Acquire(seg, kSlot));
  ::kill(pid, SIGKILL);
  testing::WaitChild(pid);
}

// A forked child destroying its inherited HolderLock leaves the parent's slot held, and the
// child cannot claim the parent's slot either (it holds nothing of it).
// A program closes a token fd behind the HolderLock's back and the number is reused for a
// pipe: the kernel drops the lock (seen as free), and releasing the HolderLock later must
// not close the pipe (before, Release closed whatever the number named).
TEST(HolderLock, TokenClosedBehindItsBackAndNumberReusedIsNotClosedAgain) {
  Segment seg = MakeSegment("hl-reuse");
  auto lock = HolderLock::Acquire(seg, kSlot);
  ASSERT_TRUE(lock) << lock.error().message();
  const std::set<int> on_file = testing::FdsOnSameFile(seg.fd());
  ASSERT_EQ(on_file.size(), 1u);
  const std::vector<int> tokens(on_file.begin(), on_file.end());
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  ASSERT_EQ(::dup2(p[0], tokens[0]), tokens[0]);  // closes the token, reuses its number
  EXPECT_EQ(ProbeHolder(seg, kSlot), HolderState::kDead);
  lock->Release();
  EXPECT_NE(::fcntl(tokens[0], F_GETFD), -1) << "the reused number was closed";
  EXPECT_EQ(::write(p[1], "x", 1), 1);
  char c = 0;
  EXPECT_EQ(::read(tokens[0], &c, 1), 1);
  ::close(tokens[0]);
  ::close(p[0]);
  ::close(p[1]);
}

TEST(HolderLock, ForkedChildDestroyingInheritedLockKeepsParentsSlot) {
  Segment seg = MakeSegment("hl-fork");
  auto lock = HolderLock::Acquire(seg, kSlot);
  ASSERT_TRUE(lock);
  pid_t child = testing::ForkChild([&]() -> int {
    if (ProbeHolder(seg, kSlot) != HolderState::kAlive) return 2;  // parent still holds
    lock->Release();                                               // inherited object
    if (ProbeHolder(seg, kSlot) != HolderState::kAlive) return 3;
    if (HolderLock::Acquire(seg, kSlot)) return 4;  // never the parent's slot
    // A new token of the child's own, then released: unrelated to the parent's.
    auto mine = HolderLock::Acquire(seg, kSlot + 1);
    if (!mine) return 5;
    return 0;
  });
  EXPECT_EQ(testing::WaitChild(child), 0);
  EXPECT_EQ(ProbeHolder(seg, kSlot), HolderState::kAlive);
  EXPECT_EQ(ProbeHolder(seg, kSlot + 1), HolderState::kDead);
  lock->Release();
  EXPECT_EQ(ProbeHolder(seg, kSlot), HolderState::kDead);
}

// The holder forks a child that outlives it: the child's inherited copy does not keep the
// dead holder's slot alive.
TEST(HolderLock, ForkedChildDoesNotKeepDeadParentsSlot) {
  Segment seg = MakeSegment("hl-fork2");
  auto* grandchild = testing::NewShared<std::atomic<pid_t>>();
  testing::Signal ready;
  pid_t holder = ForkHolder(seg, kSlot, ready, [&](HolderLock&) -> int {
    pid_t gc = ::fork();
    if (gc == 0) {
      grandchild->store(::getpid());  // runs after the atfork child handler
      for (;;) ::pause();
    }
    // Until the child has run its atfork handler its copy of the token still counts (a
    // transient "alive", never a false "dead"): wait for it.
    while (grandchild->load() != gc) ::usleep(100);
    ready.Notify();
    for (;;) ::pause();
  });
  ASSERT_TRUE(ready.Wait());
  EXPECT_EQ(ProbeHolder(seg, kSlot), HolderState::kAlive);
  ::kill(holder, SIGKILL);
  EXPECT_EQ(testing::WaitChild(holder), 128 + SIGKILL);
  const pid_t gc = grandchild->load();
  EXPECT_EQ(::kill(gc, 0), 0);  // the grandchild lives on (reparented)
  EXPECT_EQ(ProbeHolder(seg, kSlot), HolderState::kDead);
  ::kill(gc, SIGKILL);
  testing::DeleteShared(grandchild);
}

// The thread-group leader exits (a zombie in /proc), another thread keeps the process and
// its slot alive.
TEST(HolderLock, ZombieLeaderWithLiveThreadIsAlive) {
  Segment seg = MakeSegment("hl-zombie");
  testing::Signal ready;
  // The leader leaves by the raw exit syscall (this thread only, no unwinding into gtest).
  pid_t pid = ::fork();
  if (pid == 0) {
    auto lock = HolderLock::Acquire(seg, kSlot);
    if (!lock) ::_exit(3);
    std::thread([] {
      for (;;) ::pause();
    }).detach();
    ready.Notify();
    ::syscall(SYS_exit, 0);
  }
  ASSERT_TRUE(ready.Wait());
  // Wait until the leader is a zombie ("State: Z" in /proc/<pid>/status).
  ASSERT_TRUE(Eventually([&] {
    char path[64];
    std::snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE* f = std::fopen(path, "r");
    if (f == nullptr) return false;
    char buf[512] = {};
    size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
    std::fclose(f);
    std::string s(buf, n);
    auto p = s.rfind(')');
    return p != std::string::npos && p + 2 < s.size() && s[p + 2] == 'Z';
  }));
  EXPECT_EQ(ProbeHolder(seg, kSlot), HolderState::kAlive);
  ::kill(pid, SIGKILL);
  EXPECT_EQ(testing::WaitChild(pid), 128 + SIGKILL);
  EXPECT_EQ(ProbeHolder(seg, kSlot), HolderState::kDead);
}

// A holder in another PID namespace (pid 1 there) sharing /dev/shm, as in a container.
TEST(HolderLock, HolderInAnotherPidNamespace) {
  Segment seg = MakeSegment("hl-pidns");
  auto* shared = testing::NewShared<testing::PidNsShared>();
  testing::Signal ready;
  const std::string name = seg.name();
  pid_t mid = 0;
  const bool started = testing::StartInPidNamespace(
      [&]() -> int {
        auto own = Segment::Open(name);
        auto lock =
            own ? HolderLock::Acquire(*own, kSlot) : Expected<HolderLock>(RingErrc::kBadState);
        shared->status.store(lock ? 1 : 3);
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
  EXPECT_EQ(ProbeHolder(seg, kSlot), HolderState::kAlive);
  ::kill(shared->holder.load(), SIGKILL);
  EXPECT_EQ(testing::WaitChild(mid), 0);  // it reaped the holder
  EXPECT_EQ(ProbeHolder(seg, kSlot), HolderState::kDead);
  testing::DeleteShared(shared);
}

// Many threads race for one slot: exactly one wins.
TEST(HolderLock, ConcurrentAcquireHasOneWinner) {
  Segment seg = MakeSegment("hl-race");
  std::atomic<int> winners{0};
  std::vector<HolderLock> won(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      auto l = HolderLock::Acquire(seg, kSlot);
      if (l) {
        winners.fetch_add(1);
        won[i] = std::move(*l);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(winners.load(), 1);
}

}  // namespace
}  // namespace shmlink
