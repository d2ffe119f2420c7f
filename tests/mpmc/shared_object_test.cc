// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// SharedObject / SharedValue / SharedArray: sharing across processes, the robust lock when
// its holder is SIGKILLed (EOWNERDEAD -> repair -> consistent), ENOTRECOVERABLE instead of
// a deadlock when nobody repairs, and hostile or mismatched segments.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "tests/test_util.h"

#include <shmlink/mpmc_queue.h>
#include <shmlink/segment_header.h>
#include <shmlink/shared_object.h>

namespace shmlink {
namespace {

using namespace std::chrono_literals;
using testing::ForkChild;
using testing::ShmExists;
using testing::Signal;
using testing::UniqueShmName;
using testing::WaitChild;
using testing::WaitChildFor;

struct Pair {
  int32_t a;
  double b;
};

TEST(SharedObjectTest, ValueAndArrayAreSharedAcrossProcesses) {
  const std::string vname = UniqueShmName("obj-value");
  const std::string aname = UniqueShmName("obj-array");
  {
    auto v = SharedValue<Pair>::Create(vname, Pair{7, 1.5});
    ASSERT_TRUE(v) << v.error().message();
    auto arr = SharedArray<double>::Create(aname, 10);
    ASSERT_TRUE(arr);
    EXPECT_EQ(arr->size(), 10u);
    EXPECT_EQ(arr->span()[3], 0.0);  // zero-filled
    pid_t child = ForkChild([&] {
      auto cv = SharedValue<Pair>::Attach(vname);
      auto ca = SharedArray<double>::Attach(aname);
      if (!cv || !ca) return 2;
      if (cv->get()->a != 7) return 3;
      auto g = cv->lock();
      if (!g || g->owner_died()) return 4;
      cv->get()->a = 42;
      for (size_t i = 0; i < ca->size(); ++i) ca->span()[i] = static_cast<double>(i) * 2;
      return 0;
    });
    ASSERT_EQ(WaitChild(child), 0);
    auto g = v->lock();
    ASSERT_TRUE(g);
    EXPECT_FALSE(g->owner_died());
    EXPECT_EQ(v->get()->a, 42);
    EXPECT_EQ(v->get()->b, 1.5);
    EXPECT_EQ(arr->span()[9], 18.0);
  }
  EXPECT_FALSE(ShmExists(vname));
  EXPECT_FALSE(ShmExists(aname));
}

TEST(SharedObjectTest, ByteLevelCoreAndTypeTag) {
  const std::string name = UniqueShmName("obj-bytes");
  SharedObject::CreateOptions o;
  o.elem_size = 4;
  o.type_tag = 'i';
  auto obj = SharedObject::Create(name, 40, o);
  ASSERT_TRUE(obj);
  auto a = SharedObject::Attach(name);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->size(), 40u);
  EXPECT_EQ(a->elem_size(), 4u);
  EXPECT_EQ(a->count(), 10u);
  EXPECT_EQ(a->type_tag(), static_cast<uint64_t>('i'));
  std::memcpy(obj->data(), "abcd", 4);
  EXPECT_EQ(std::memcmp(a->data(), "abcd", 4), 0);
  EXPECT_EQ(SharedObject::Create(UniqueShmName("obj-bad"), 0).error(), RingErrc::kInvalidArgument);
  EXPECT_EQ(SharedObject::Create(UniqueShmName("obj-bad"), 10, o).error(),
            RingErrc::kInvalidArgument);  // not a multiple of elem_size
}

TEST(SharedObjectTest, MismatchedTypeWrongKindAndHostileHeader) {
  const std::string name = UniqueShmName("obj-kind");
  auto v = SharedValue<uint32_t>::Create(name, 5);
  ASSERT_TRUE(v);
  EXPECT_EQ(SharedValue<uint64_t>::Attach(name).error(), RingErrc::kBadGeometry);
  EXPECT_EQ(MpmcQueue::Attach(name).error(), RingErrc::kWrongKind);
  const std::string qname = UniqueShmName("obj-queue");
  auto q = MpmcQueue::Create(qname, 4, 16);
  ASSERT_TRUE(q);
  EXPECT_EQ(SharedObject::Attach(qname).error(), RingErrc::kWrongKind);
  // data_offset moved, checksum re-sealed: still rejected by the geometry check.
  auto seg = Segment::Open(name);
  ASSERT_TRUE(seg);
  const uint64_t bad = 64;
  std::memcpy(seg->data() + offsetof(SegmentHeader, geometry), &bad, 8);
  const uint64_t sum = HeaderChecksum(seg->data());
  std::memcpy(seg->data() + offsetof(SegmentHeader, checksum), &sum, 8);
  EXPECT_EQ(SharedObject::Attach(name).error(), RingErrc::kBadGeometry);
}

TEST(SharedObjectTest, TryLockAndTimedLockAcrossProcesses) {
  const std::string name = UniqueShmName("obj-try");
  auto v = SharedValue<int>::Create(name, 0);
  ASSERT_TRUE(v);
  Signal ready, done;
  pid_t child = ForkChild([&] {
    auto cv = SharedValue<int>::Attach(name);
    auto g = cv->lock();
    if (!g) return 2;
    ready.Notify();
    done.Wait();
    return 0;
  });
  ASSERT_TRUE(ready.Wait());
  EXPECT_EQ(v->object().try_lock().error(), RingErrc::kWouldBlock);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(v->object().lock_for(30ms).error(), RingErrc::kTimedOut);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  done.Notify();
  EXPECT_EQ(WaitChild(child), 0);
  auto g = v->object().try_lock();
  ASSERT_TRUE(g);
  EXPECT_FALSE(g->owner_died());
}

// The shared counter: every increment records itself in done[proc]; a locker that finds
// the previous owner dead repairs count from the per-process records.
struct Counter {
  uint64_t count;
  uint64_t in_progress;
  uint64_t done[4];
  uint64_t repairs;
};

void LockAndRepair(SharedValue<Counter>& v, SharedObject::Guard& g) {
  if (!g.owner_died()) return;
  Counter* c = v.get();
  c->count = c->done[0] + c->done[1] + c->done[2] + c->done[3];
  c->in_progress = 0;
  c->repairs += 1;
  ASSERT_TRUE(g.mark_consistent());
}

TEST(SharedObjectTest, CounterStaysExactWhenAHolderIsKilled) {
  constexpr uint64_t kIncrements = testing::kSanitized ? 2000 : 20000;
  constexpr uint64_t kVictimDone = 123;
  const std::string name = UniqueShmName("obj-counter");
  auto v = SharedValue<Counter>::Create(name, Counter{});
  ASSERT_TRUE(v);
  Signal holding;
  std::vector<pid_t> kids;
  for (int me = 0; me < 4; ++me) {
    kids.push_back(ForkChild([&, me] {
      auto cv = SharedValue<Counter>::Attach(name);
      if (!cv) return 2;
      const uint64_t n = me == 0 ? kVictimDone : kIncrements;
      for (uint64_t i = 0; i < n; ++i) {
        auto g = cv->lock();
        if (!g) return 3;
        LockAndRepair(*cv, *g);
        Counter* c = cv->get();
        c->in_progress = 1;
        c->count += 1;
        c->done[me] += 1;
        c->in_progress = 0;
      }
      if (me != 0) return 0;
      // The victim: dies in the middle of an increment, holding the lock.
      auto g = cv->lock();
      if (!g) return 4;
      LockAndRepair(*cv, *g);
      cv->get()->in_progress = 1;
      cv->get()->count += 1;
      holding.Notify();
      for (;;) ::pause();
    }));
  }
  ASSERT_TRUE(holding.Wait());
  ASSERT_EQ(::kill(kids[0], SIGKILL), 0);
  EXPECT_EQ(WaitChildFor(kids[0], 5000ms), 128 + SIGKILL);
  for (int i = 1; i < 4; ++i) EXPECT_EQ(WaitChildFor(kids[i], 30000ms), 0) << "worker " << i;
  auto g = v->lock();  // repairs here if every survivor finished before the victim died
  ASSERT_TRUE(g);
  LockAndRepair(*v, *g);
  const Counter c = *v->get();
  EXPECT_EQ(c.repairs, 1u);
  EXPECT_EQ(v->object().owner_died_count(), 1u);
  EXPECT_EQ(c.done[0], kVictimDone);
  EXPECT_EQ(c.count, 3 * kIncrements + kVictimDone);
  EXPECT_EQ(c.in_progress, 0u);
}

// Runs a child that attaches to the SharedValue<int> `name` and exits while it holds the
// lock; returns the child's exit code (0: it did).
int ExitHoldingTheLock(const std::string& name) {
  return WaitChild(ForkChild([&]() -> int {
    auto cv = SharedValue<int>::Attach(name);
    auto g = cv->lock();
    ::_exit(g ? 0 : 2);  // no destructors: the lock stays held
  }));
}

TEST(SharedObjectTest, UnrepairedLockBecomesNotRecoverableInsteadOfDeadlocking) {
  const std::string name = UniqueShmName("obj-norec");
  auto v = SharedValue<int>::Create(name, 0);
  ASSERT_TRUE(v);
  ASSERT_EQ(ExitHoldingTheLock(name), 0);
  {
    auto g = v->lock();
    ASSERT_TRUE(g);
    EXPECT_TRUE(g->owner_died());
    // No mark_consistent(): the guard's unlock leaves the lock unrecoverable.
  }
  auto again = v->object().lock_for(2s);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), std::errc::state_not_recoverable);
}

TEST(SharedObjectTest, AutoRecoverReportsAndContinues) {
  const std::string name = UniqueShmName("obj-auto");
  auto v = SharedValue<int>::Create(name, 0);
  ASSERT_TRUE(v);
  ASSERT_EQ(ExitHoldingTheLock(name), 0);
  {
    auto g = v->lock(LockRecovery::kAutoRecover);
    ASSERT_TRUE(g);
    EXPECT_TRUE(g->owner_died());
  }
  auto g = v->lock();
  ASSERT_TRUE(g);
  EXPECT_FALSE(g->owner_died());
}

// A Guard that outlives its SharedObject (the last owner of the mapping) keeps the mapping
// alive until it unlocks: it never touches unmapped memory (this crashed, and is an ASan
// use-after-unmap, before Guards held the mapping).
TEST(SharedObjectTest, GuardOutlivingItsObjectKeepsTheMapping) {
  const std::string name = UniqueShmName("obj-guard");
  std::optional<SharedObject::Guard> guard;
  {
    auto obj = SharedObject::Create(name, 64);
    ASSERT_TRUE(obj) << obj.error().message();
    auto g = obj->lock();
    ASSERT_TRUE(g);
    guard.emplace(std::move(*g));
  }  // the object is gone; the guard still holds its lock
  ASSERT_TRUE(guard->owns_lock());
  EXPECT_TRUE(guard->mark_consistent());
  guard->unlock();
  EXPECT_FALSE(guard->owns_lock());
  guard.reset();
  EXPECT_FALSE(ShmExists(name));
}

// lock_for goes through pthread_mutex_clocklock(CLOCK_MONOTONIC): zero and negative timeouts
// are one try, a huge one saturates (waits, does not overflow into the past), and a held lock
// still times out.
TEST(SharedObjectTest, TimedLockOnTheMonotonicClock) {
  const std::string name = UniqueShmName("obj-mono");
  auto v = SharedValue<int>::Create(name, 0);
  ASSERT_TRUE(v);
  Signal ready, done;
  pid_t child = ForkChild([&] {
    auto cv = SharedValue<int>::Attach(name);
    auto g = cv->lock();
    if (!g) return 2;
    ready.Notify();
    done.Wait();
    return 0;
  });
  ASSERT_TRUE(ready.Wait());
  EXPECT_EQ(v->object().lock_for(0ns).error(), RingErrc::kTimedOut);
  EXPECT_EQ(v->object().lock_for(-5s).error(), RingErrc::kTimedOut);
  EXPECT_EQ(v->object().lock_for(20ms).error(), RingErrc::kTimedOut);
  done.Notify();  // the child unlocks and exits while we wait "forever"
  auto g = v->object().lock_for(std::chrono::nanoseconds::max());
  ASSERT_TRUE(g) << g.error().message();
  EXPECT_FALSE(g->owner_died());
  EXPECT_EQ(WaitChild(child), 0);
}

// Stale-name removal asks the kernel about the creator's HolderLock slot: a creator that
// exec'd (same pid and start time, so /proc said "alive") no longer holds it, and its name is
// reclaimed; a live creator's is not.
TEST(SharedObjectTest, StaleDecisionUsesTheCreatorSlot) {
  const std::string name = UniqueShmName("obj-stale");
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  testing::Signal created, go;
  pid_t child = ForkChild([&]() -> int {
    SharedObject::CreateOptions o;
    o.unlink = UnlinkPolicy::kKeep;
    auto obj = SharedObject::Create(name, 64, o);
    if (!obj) return 2;
    created.Notify();
    if (!go.Wait()) return 3;  // the parent tried while we live
    ::dup2(pipefd[1], 3);
    ::execl("/bin/sh", "sh", "-c", "printf x >&3; exec sleep 60", static_cast<char*>(nullptr));
    return 4;
  });
  ASSERT_TRUE(created.Wait());
  SharedObject::CreateOptions o;
  o.reclaim_stale = true;
  auto alive = SharedObject::Create(name, 64, o);
  ASSERT_FALSE(alive) << "a live creator's object was reclaimed";
  EXPECT_EQ(alive.error(), std::errc::file_exists);
  go.Notify();
  ::close(pipefd[1]);
  char c = 0;
  ASSERT_EQ(::read(pipefd[0], &c, 1), 1);  // the exec'd image runs (it wrote to fd 3)
  ::close(pipefd[0]);
  {
    auto reclaimed = SharedObject::Create(name, 64, o);
    EXPECT_TRUE(reclaimed) << reclaimed.error().message();
  }
  ::kill(child, SIGKILL);
  EXPECT_EQ(WaitChild(child), 128 + SIGKILL);
  if (ShmExists(name)) ::shm_unlink(name.c_str());  // only after a failure: the kept original
  EXPECT_FALSE(ShmExists(name));
}

TEST(SharedObjectTest, MovedFromObjectFailsTyped) {
  const std::string name = UniqueShmName("obj-moved");
  auto obj = SharedObject::Create(name, 64);
  ASSERT_TRUE(obj);
  SharedObject other = std::move(*obj);
  EXPECT_EQ(obj->lock().error(), RingErrc::kBadState);
  EXPECT_EQ(obj->try_lock().error(), RingErrc::kBadState);
  EXPECT_EQ(obj->lock_for(1ms).error(), RingErrc::kBadState);
  EXPECT_TRUE(other.lock());
}

}  // namespace
}  // namespace shmlink
