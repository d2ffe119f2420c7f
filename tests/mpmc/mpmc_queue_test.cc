// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// MpmcQueue semantics in one process, hostile segments, and the two deterministic crash
// cases of the documented crash semantics (mpmc_queue.h), with real processes and SIGKILL.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "tests/test_util.h"

#include <shmlink/mpmc_queue.h>
#include <shmlink/segment_header.h>
#include <shmlink/spsc_ring.h>

namespace shmlink {
namespace {

using namespace std::chrono_literals;
using testing::Bytes;
using testing::ForkChild;
using testing::ShmExists;
using testing::Str;
using testing::UniqueShmName;
using testing::WaitChild;
using testing::WaitChildFor;

TEST(MpmcQueueTest, PushPopVariableSizesInOrder) {
  const std::string name = UniqueShmName("mpmc-basic");
  {
    auto q = MpmcQueue::Create(name, 8, 100);
    ASSERT_TRUE(q) << q.error().message();
    auto other = MpmcQueue::Attach(name);
    ASSERT_TRUE(other) << other.error().message();
    EXPECT_EQ(other->capacity(), 8u);
    EXPECT_EQ(other->max_message_size(), 100u);
    auto tx = q->Producer();
    auto rx = other->Consumer();
    ASSERT_TRUE(tx && rx);
    const std::vector<std::string> msgs = {"", "a", std::string(100, 'z'), "hello"};
    for (const auto& m : msgs) ASSERT_TRUE(tx->try_push(Bytes(m)));
    EXPECT_EQ(q->size(), 4u);
    std::vector<std::byte> buf(100);
    for (const auto& m : msgs) {
      auto r = rx->try_pop(buf);
      ASSERT_TRUE(r) << r.error().message();
      EXPECT_FALSE(r->redelivered);
      EXPECT_EQ(Str({buf.data(), r->size}), m);
    }
    auto empty = rx->try_pop(buf);
    ASSERT_FALSE(empty);
    EXPECT_EQ(empty.error(), RingErrc::kWouldBlock);
    MpmcStats st = other->stats();
    EXPECT_EQ(st.pushes, 4u);
    EXPECT_EQ(st.pops, 4u);
    EXPECT_EQ(st.size, 0u);
    EXPECT_EQ(st.producers, 1u);
    EXPECT_EQ(st.consumers, 1u);
  }
  EXPECT_FALSE(ShmExists(name));
}

TEST(MpmcQueueTest, FullEmptyTimeoutsAndWrapAround) {
  const std::string name = UniqueShmName("mpmc-full");
  auto q = MpmcQueue::Create(name, 4, 16);
  ASSERT_TRUE(q);
  auto tx = q->Producer();
  auto rx = q->Consumer();
  ASSERT_TRUE(tx && rx);
  std::vector<std::byte> buf(16);
  for (int lap = 0; lap < 5; ++lap) {
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(tx->try_push(Bytes(std::to_string(lap * 4 + i))));
    auto full = tx->try_push(Bytes("x"));
    ASSERT_FALSE(full);
    EXPECT_EQ(full.error(), RingErrc::kWouldBlock);
    EXPECT_EQ(q->size(), 4u);
    for (int i = 0; i < 4; ++i) {
      auto r = rx->try_pop(buf);
      ASSERT_TRUE(r);
      EXPECT_EQ(Str({buf.data(), r->size}), std::to_string(lap * 4 + i));
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto timed = rx->pop(buf, WaitOptions::WithTimeout(30ms));
  ASSERT_FALSE(timed);
  EXPECT_EQ(timed.error(), RingErrc::kTimedOut);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(tx->try_push(Bytes("y")));
  auto timed_push = tx->push(Bytes("z"), WaitOptions::Sleep(30ms));
  ASSERT_FALSE(timed_push);
  EXPECT_EQ(timed_push.error(), RingErrc::kTimedOut);
}

TEST(MpmcQueueTest, TooLargeAndSmallBufferKeepsTheClaim) {
  const std::string name = UniqueShmName("mpmc-large");
  auto q = MpmcQueue::Create(name, 4, 10);
  ASSERT_TRUE(q);
  auto tx = q->Producer();
  auto rx = q->Consumer();
  EXPECT_EQ(tx->try_push(Bytes(std::string(11, 'a'))).error(), RingErrc::kTooLarge);
  ASSERT_TRUE(tx->try_push(Bytes("0123456789")));
  std::vector<std::byte> small(4), big(10);
  auto r = rx->try_pop(small);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), RingErrc::kTooLarge);
  EXPECT_TRUE(rx->has_claim());
  r = rx->try_pop(big);
  ASSERT_TRUE(r);
  EXPECT_EQ(Str({big.data(), r->size}), "0123456789");
}

TEST(MpmcQueueTest, ZeroCopyClaimPublishReleaseAndMisuse) {
  const std::string name = UniqueShmName("mpmc-zc");
  auto q = MpmcQueue::Create(name, 4, 64);
  ASSERT_TRUE(q);
  auto tx = q->Producer();
  auto rx = q->Consumer();
  EXPECT_EQ(tx->publish().error(), RingErrc::kBadState);
  EXPECT_EQ(rx->release().error(), RingErrc::kBadState);
  auto span = tx->try_claim(64);
  ASSERT_TRUE(span);
  EXPECT_EQ(span->size(), 64u);
  EXPECT_EQ(tx->try_claim(1).error(), RingErrc::kBadState);
  std::memcpy(span->data(), "in-place", 8);
  EXPECT_EQ(tx->publish(65).error(), RingErrc::kBadState);
  ASSERT_TRUE(tx->publish(8));
  auto m = rx->try_claim();
  ASSERT_TRUE(m);
  EXPECT_EQ(Str(m->data), "in-place");
  EXPECT_EQ(rx->try_claim().error(), RingErrc::kBadState);
  ASSERT_TRUE(rx->release());
  EXPECT_EQ(q->stats().pops, 1u);
}

TEST(MpmcQueueTest, AbortedClaimIsSkippedAndCounted) {
  const std::string name = UniqueShmName("mpmc-abort");
  auto q = MpmcQueue::Create(name, 4, 16);
  ASSERT_TRUE(q);
  auto tx1 = q->Producer();
  auto tx2 = q->Producer();
  auto rx = q->Consumer();
  ASSERT_TRUE(tx1->try_claim(4));
  ASSERT_TRUE(tx2->try_push(Bytes("second")));
  std::vector<std::byte> buf(16);
  EXPECT_EQ(rx->try_pop(buf).error(), RingErrc::kWouldBlock);  // FIFO: head still claimed
  tx1->abort();
  auto r = rx->try_pop(buf);
  ASSERT_TRUE(r);
  EXPECT_EQ(Str({buf.data(), r->size}), "second");
  MpmcStats st = q->stats();
  EXPECT_EQ(st.abandoned, 1u);
  EXPECT_EQ(st.pushes, 1u);
  EXPECT_EQ(st.pops, 1u);
  EXPECT_EQ(st.size, 0u);
}

TEST(MpmcQueueTest, InvalidArguments) {
  const std::string name = UniqueShmName("mpmc-args");
  EXPECT_EQ(MpmcQueue::Create(name, 3, 16).error(), RingErrc::kInvalidArgument);
  EXPECT_EQ(MpmcQueue::Create(name, 1, 16).error(), RingErrc::kInvalidArgument);
  EXPECT_EQ(MpmcQueue::Create(name, 4, 0).error(), RingErrc::kInvalidArgument);
  EXPECT_EQ(MpmcQueue::Create("bad-name", 4, 16).error(), RingErrc::kInvalidName);
  EXPECT_EQ(MpmcQueue::Attach(name).error(), std::errc::no_such_file_or_directory);
  auto q = MpmcQueue::Create(name, 4, 16);
  ASSERT_TRUE(q);
  EXPECT_EQ(MpmcQueue::Create(name, 4, 16).error(), std::errc::file_exists);  // exclusive
}

TEST(MpmcQueueTest, WrongKindIsRejected) {
  const std::string name = UniqueShmName("mpmc-kind");
  auto ring = SpscRing::Create(name, 4096);
  ASSERT_TRUE(ring);
  auto q = MpmcQueue::Attach(name);
  ASSERT_FALSE(q);
  EXPECT_EQ(q.error(), RingErrc::kWrongKind);
}

// Rewrites a header field through a second mapping and re-seals the checksum.
void PatchHeader(const std::string& name, size_t offset, uint64_t value, bool reseal) {
  auto seg = Segment::Open(name);
  ASSERT_TRUE(seg);
  std::memcpy(seg->data() + offset, &value, sizeof(value));
  if (reseal) {
    const uint64_t sum = HeaderChecksum(seg->data());
    std::memcpy(seg->data() + offsetof(SegmentHeader, checksum), &sum, 8);
  }
}

TEST(MpmcQueueTest, HostileHeadersAreRejected) {
  struct Case {
    size_t offset;
    uint64_t value;
    bool reseal;
    RingErrc want;
  };
  const size_t geo = offsetof(SegmentHeader, geometry);
  const std::vector<Case> cases = {
      {0, 0x1234, true, RingErrc::kBadMagic},
      {geo, 3, false, RingErrc::kBadChecksum},  // slot_count, checksum not updated
      {geo, 3, true, RingErrc::kBadGeometry},   // not a power of two
      {geo, uint64_t{1} << 40, true, RingErrc::kBadGeometry},
      {geo + 8, 1u << 20, true, RingErrc::kBadGeometry},  // max size vs stride
      {geo + 16, 8, true, RingErrc::kBadGeometry},        // stride
      {geo + 48, 64, true, RingErrc::kBadGeometry},       // slots_offset
      {24, 1u << 30, true, RingErrc::kTruncated},         // total_size beyond the file
  };
  for (const Case& c : cases) {
    const std::string name = UniqueShmName("mpmc-hostile");
    auto q = MpmcQueue::Create(name, 8, 32);
    ASSERT_TRUE(q);
    PatchHeader(name, c.offset, c.value, c.reseal);
    auto a = MpmcQueue::Attach(name);
    ASSERT_FALSE(a) << "offset " << c.offset;
    EXPECT_EQ(a.error(), c.want) << "offset " << c.offset << ": " << a.error().message();
  }
}

TEST(MpmcQueueTest, HostileSlotsGiveErrorsNotCrashes) {
  const std::string name = UniqueShmName("mpmc-hostile-slot");
  auto q = MpmcQueue::Create(name, 4, 32);
  ASSERT_TRUE(q);
  auto tx = q->Producer();
  auto rx = q->Consumer();
  ASSERT_TRUE(tx->try_push(Bytes("ok")));
  auto seg = Segment::Open(name);
  ASSERT_TRUE(seg);
  auto g = ValidateMpmcSegment(*seg);
  ASSERT_TRUE(g);
  MpmcView v = MpmcViewOf(*seg, *g);
  v.slot(0)->length = 1u << 30;  // longer than max_message_size
  std::vector<std::byte> buf(64);
  auto r = rx->try_pop(buf);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), RingErrc::kCorrupt);
  // Garbage stamps everywhere: calls return errors and never touch memory out of bounds.
  for (uint64_t i = 0; i < 4; ++i) v.slot(i)->stamp.store(0xdeadbeefdeadbeefull + i);
  EXPECT_FALSE(rx->try_pop(buf));
  EXPECT_FALSE(tx->try_push(Bytes("x")));
}

TEST(MpmcQueueTest, RegistryFullThenDeadEntriesAreReused) {
  const std::string name = UniqueShmName("mpmc-registry");
  auto q = MpmcQueue::Create(name, 4, 16);
  ASSERT_TRUE(q);
  pid_t child = ForkChild([&] {
    auto a = MpmcQueue::Attach(name);
    if (!a) return 2;
    std::vector<MpmcProducer> hs;
    for (uint32_t i = 0; i < kMpmcMaxHandles; ++i) {
      auto p = a->Producer();
      if (!p) return 3;
      hs.push_back(std::move(*p));
    }
    if (a->Producer().error() != RingErrc::kRoleTaken) return 4;
    ::_exit(0);  // die holding every entry (no destructors)
  });
  ASSERT_EQ(WaitChild(child), 0);
  EXPECT_EQ(q->stats().producers, kMpmcMaxHandles);
  auto p = q->Producer();  // recovers the dead entries
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(q->stats().producers, 1u);
}

// A moved-from queue or handle maps nothing of its own: every call fails with kBadState (it
// used to keep a copy of the view and claim under an index it no longer owned, or crash).
TEST(MpmcQueueTest, MovedFromQueueAndHandlesFailTyped) {
  const std::string name = UniqueShmName("mpmc-moved");
  auto q = MpmcQueue::Create(name, 4, 16);
  ASSERT_TRUE(q);
  auto tx = q->Producer();
  auto rx = q->Consumer();
  ASSERT_TRUE(tx && rx);
  MpmcProducer tx2 = std::move(*tx);
  MpmcConsumer rx2 = std::move(*rx);
  EXPECT_EQ(tx->try_claim(4).error(), RingErrc::kBadState);
  EXPECT_EQ(tx->claim(4, WaitOptions::WithTimeout(1ms)).error(), RingErrc::kBadState);
  EXPECT_EQ(tx->try_push(Bytes("x")).error(), RingErrc::kBadState);
  EXPECT_EQ(tx->publish().error(), RingErrc::kBadState);
  EXPECT_EQ(rx->try_claim().error(), RingErrc::kBadState);
  EXPECT_EQ(rx->claim(WaitOptions::WithTimeout(1ms)).error(), RingErrc::kBadState);
  EXPECT_EQ(rx->release().error(), RingErrc::kBadState);
  std::vector<std::byte> buf(16);
  EXPECT_EQ(rx->try_pop(buf).error(), RingErrc::kBadState);
  ASSERT_TRUE(tx2.try_push(Bytes("moved")));
  auto p = rx2.try_pop(buf);
  ASSERT_TRUE(p);
  EXPECT_EQ(Str({buf.data(), p->size}), "moved");

  MpmcQueue q2 = std::move(*q);
  EXPECT_EQ(q->Producer().error(), RingErrc::kBadState);
  EXPECT_EQ(q->Consumer().error(), RingErrc::kBadState);
  EXPECT_EQ(q->Unlink().error(), RingErrc::kBadState);
  EXPECT_EQ(q->RecoverDead(), 0u);
  EXPECT_EQ(q->stats().capacity, 0u);
  EXPECT_EQ(q->segment().fd(), -1);
  EXPECT_TRUE(q2.Consumer());
}

// The stale decision is the kernel's (ProbeAnyHolder over the registry + the creator slot):
// a live handle in another process keeps the name; once its process exec'd (same pid and
// start time, so /proc said "alive") and the creator is gone, the name is reclaimed.
TEST(MpmcQueueTest, StaleDecisionAsksTheHolderLocks) {
  const std::string name = UniqueShmName("mpmc-stale-locks");
  {
    MpmcQueue::CreateOptions o;
    o.unlink = UnlinkPolicy::kKeep;
    auto q = MpmcQueue::Create(name, 4, 16, o);
    ASSERT_TRUE(q);
  }  // the creator's queue is gone; the name stays
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  testing::Signal holding, go;
  const pid_t child = ForkChild([&]() -> int {
    auto a = MpmcQueue::Attach(name);
    if (!a) return 2;
    auto rx = a->Consumer();
    if (!rx) return 3;
    holding.Notify();
    if (!go.Wait()) return 4;
    ::dup2(pipefd[1], 3);
    ::execl("/bin/sh", "sh", "-c", "printf x >&3; exec sleep 60", static_cast<char*>(nullptr));
    return 5;
  });
  ASSERT_TRUE(holding.Wait());
  auto kept = MpmcQueue::Create(name, 4, 16);
  ASSERT_FALSE(kept) << "a queue with a live handle was reclaimed";
  EXPECT_EQ(kept.error(), std::errc::file_exists);
  go.Notify();
  ::close(pipefd[1]);
  char c = 0;
  ASSERT_EQ(::read(pipefd[0], &c, 1), 1);  // the exec'd image runs
  ::close(pipefd[0]);
  {
    auto reclaimed = MpmcQueue::Create(name, 4, 16);
    EXPECT_TRUE(reclaimed) << reclaimed.error().message();
  }
  ::kill(child, SIGKILL);
  EXPECT_EQ(WaitChild(child), 128 + SIGKILL);
  const bool left = ShmExists(name);
  if (left) ::shm_unlink(name.c_str());  // only after a failure: the kept original
  EXPECT_FALSE(left);
}

TEST(MpmcQueueTest, StaleNameIsReclaimedOnCreate) {
  const std::string name = UniqueShmName("mpmc-stale");
  pid_t child = ForkChild([&] {
    MpmcQueue::CreateOptions o;
    o.unlink = UnlinkPolicy::kKeep;
    auto q = MpmcQueue::Create(name, 4, 16, o);
    if (!q) return 2;
    auto tx = q->Producer();
    ::_exit(tx ? 0 : 3);
  });
  ASSERT_EQ(WaitChild(child), 0);
  ASSERT_TRUE(ShmExists(name));
  {
    auto q = MpmcQueue::Create(name, 4, 16);
    ASSERT_TRUE(q) << q.error().message();
  }
  EXPECT_FALSE(ShmExists(name));
}

TEST(MpmcQueueTest, BlockedConsumerIsWokenByAnotherProcess) {
  const std::string name = UniqueShmName("mpmc-wake");
  auto q = MpmcQueue::Create(name, 4, 16);
  ASSERT_TRUE(q);
  auto rx = q->Consumer();
  pid_t child = ForkChild([&] {
    auto a = MpmcQueue::Attach(name);
    if (!a) return 2;
    auto tx = a->Producer();
    std::this_thread::sleep_for(50ms);
    return tx->push(Bytes("wake")) ? 0 : 3;
  });
  std::vector<std::byte> buf(16);
  auto r = rx->pop(buf, WaitOptions::Sleep(5s));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(Str({buf.data(), r->size}), "wake");
  EXPECT_EQ(WaitChild(child), 0);
}

TEST(MpmcQueueTest, BlockedConsumerAndProducerUseAlmostNoCpu) {
  // "No CPU when idle": a consumer blocked on an empty queue and a producer blocked on a
  // full one for 1 s each sleep on the futex (waking every liveness_check for the dead-peer
  // check). Generous bound: well under a tenth of the wall time.
  const std::string name = UniqueShmName("mpmc-idle");
  auto q = MpmcQueue::Create(name, 2, 16);
  ASSERT_TRUE(q);
  pid_t child = ForkChild([&] {
    auto a = MpmcQueue::Attach(name);
    auto rx = a->Consumer();
    std::vector<std::byte> buf(16);
    auto r = rx->pop(buf, WaitOptions::WithTimeout(1s));
    if (r || r.error() != RingErrc::kTimedOut) return 2;
    auto tx = a->Producer();
    if (!tx->try_push(Bytes("a")) || !tx->try_push(Bytes("b"))) return 3;
    auto p = tx->push(Bytes("c"), WaitOptions::WithTimeout(1s));
    if (p || p.error() != RingErrc::kTimedOut) return 4;
    struct rusage ru {};
    ::getrusage(RUSAGE_SELF, &ru);
    const double cpu_s =
        ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    std::printf("cpu while blocked 2 s: %.3f s\n", cpu_s);
    std::fflush(stdout);
    return cpu_s < 0.2 ? 0 : 5;
  });
  EXPECT_EQ(WaitChild(child), 0);
}

TEST(MpmcQueueTest, StatsAreReadableFromAnotherProcess) {
  const std::string name = UniqueShmName("mpmc-stats");
  auto q = MpmcQueue::Create(name, 8, 16);
  ASSERT_TRUE(q);
  auto tx = q->Producer();
  auto rx = q->Consumer();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(tx->try_push(Bytes("m")));
  std::vector<std::byte> buf(16);
  ASSERT_TRUE(rx->try_pop(buf));
  pid_t child = ForkChild([&] {
    auto a = MpmcQueue::Attach(name);
    if (!a) return 2;
    const MpmcStats st = a->stats();
    if (st.pushes != 3 || st.pops != 1 || st.size != 2 || st.capacity != 8) return 3;
    if (st.producers != 1 || st.consumers != 1 || st.abandoned != 0) return 4;
    return 0;
  });
  EXPECT_EQ(WaitChild(child), 0);
}

TEST(MpmcQueueTest, AnonymousQueuePassedByFd) {
  auto q = MpmcQueue::CreateAnonymous(4, 16);
  ASSERT_TRUE(q) << q.error().message();
  EXPECT_TRUE(q->segment().name().empty());
  const int fd = ::dup(q->segment().fd());
  ASSERT_GE(fd, 0);
  pid_t child = ForkChild([&] {
    auto seg = Segment::FromFd(fd);
    if (!seg) return 2;
    auto a = MpmcQueue::Adopt(std::move(*seg));
    if (!a) return 3;
    auto tx = a->Producer();
    return tx && tx->try_push(Bytes("by-fd")) ? 0 : 4;
  });
  ASSERT_EQ(WaitChild(child), 0);
  ::close(fd);
  auto rx = q->Consumer();
  std::vector<std::byte> buf(16);
  auto r = rx->try_pop(buf);
  ASSERT_TRUE(r);
  EXPECT_EQ(Str({buf.data(), r->size}), "by-fd");
  // A segment of another kind is refused.
  auto other = Segment::CreateAnonymous(8192);
  ASSERT_TRUE(other);
  EXPECT_FALSE(MpmcQueue::Adopt(std::move(*other)));
}

// Child side of the crash cases: tells the parent that it holds its claim, then waits to be
// SIGKILLed.
[[noreturn]] void HoldUntilKilled(const testing::Signal& ready) {
  ready.Notify();
  for (;;) ::pause();
}

// Param: the victim is reaped right after the kill (true) or left a zombie until the end.
class MpmcCrashTest : public ::testing::TestWithParam<bool> {
 protected:
  bool reap_first() const { return GetParam(); }

  // SIGKILLs `victim` (once it holds its claim); reaps it now if the parameter says so.
  void Kill(pid_t victim) {
    ASSERT_EQ(::kill(victim, SIGKILL), 0);
    if (reap_first()) {
      EXPECT_EQ(WaitChild(victim), 128 + SIGKILL);
    }
  }

  // Reaps a victim left a zombie. If it was recovered while still dying (SIGKILL pending),
  // its claim was dealt with at once but its registry entry is freed only by a recovery
  // pass that sees it gone: runs one.
  void ReapZombie(pid_t victim, MpmcQueue& q) {
    if (reap_first()) return;
    EXPECT_EQ(WaitChild(victim), 128 + SIGKILL);
    q.RecoverDead();
  }
};

TEST_P(MpmcCrashTest, ProducerKilledBetweenClaimAndPublishDoesNotWedgeTheQueue) {
  const std::string name = UniqueShmName("mpmc-pkill");
  auto q = MpmcQueue::Create(name, 8, 32);
  ASSERT_TRUE(q);
  testing::Signal ready;
  pid_t child = ForkChild([&] {
    auto a = MpmcQueue::Attach(name);
    if (!a) return 2;
    auto tx = a->Producer();
    auto span = tx->try_claim(5);
    if (!span) return 3;
    std::memcpy(span->data(), "dead!", 5);
    HoldUntilKilled(ready);
  });
  ASSERT_TRUE(ready.Wait());
  auto tx = q->Producer();
  auto rx = q->Consumer();
  ASSERT_TRUE(tx->try_push(Bytes("after")));
  std::vector<std::byte> buf(32);
  // The head is claimed by a live producer: FIFO keeps consumers waiting.
  auto blocked = rx->pop(buf, WaitOptions::WithTimeout(50ms));
  ASSERT_FALSE(blocked);
  EXPECT_EQ(blocked.error(), RingErrc::kTimedOut);
  ASSERT_NO_FATAL_FAILURE(Kill(child));
  // Zombie or reaped: the claim is abandoned within a bounded time.
  const auto t0 = std::chrono::steady_clock::now();
  auto r = rx->pop(buf, WaitOptions::WithTimeout(2s));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_EQ(Str({buf.data(), r->size}), "after");
  EXPECT_FALSE(r->redelivered);
  ReapZombie(child, *q);
  MpmcStats st = q->stats();
  EXPECT_EQ(st.abandoned, 1u);
  EXPECT_EQ(st.pushes, 1u);
  EXPECT_EQ(st.pops, 1u);
  EXPECT_EQ(st.size, 0u);
  EXPECT_EQ(st.producers, 1u);  // the dead one's entry was freed
}

TEST_P(MpmcCrashTest, ConsumerKilledHoldingAMessageGetsItRedelivered) {
  const std::string name = UniqueShmName("mpmc-ckill");
  auto q = MpmcQueue::Create(name, 8, 32);
  ASSERT_TRUE(q);
  auto tx = q->Producer();
  ASSERT_TRUE(tx->try_push(Bytes("first")));
  ASSERT_TRUE(tx->try_push(Bytes("second")));
  testing::Signal ready;
  pid_t child = ForkChild([&] {
    auto a = MpmcQueue::Attach(name);
    if (!a) return 2;
    auto rx = a->Consumer();
    auto m = rx->try_claim();
    if (!m || Str(m->data) != "first") return 3;
    HoldUntilKilled(ready);
  });
  ASSERT_TRUE(ready.Wait());
  ASSERT_NO_FATAL_FAILURE(Kill(child));
  auto rx = q->Consumer();
  std::vector<std::byte> buf(32);
  auto r = rx->pop(buf, WaitOptions::WithTimeout(2s));
  ASSERT_TRUE(r);
  EXPECT_EQ(Str({buf.data(), r->size}), "second");
  EXPECT_FALSE(r->redelivered);
  r = rx->pop(buf, WaitOptions::WithTimeout(2s));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(Str({buf.data(), r->size}), "first");
  EXPECT_TRUE(r->redelivered);
  EXPECT_EQ(rx->try_pop(buf).error(), RingErrc::kWouldBlock);
  ReapZombie(child, *q);
  MpmcStats st = q->stats();
  EXPECT_EQ(st.redelivered, 1u);
  EXPECT_EQ(st.orphans, 0u);
  EXPECT_EQ(st.abandoned, 0u);
  EXPECT_EQ(st.pushes, 2u);
  EXPECT_EQ(st.pops, 2u);
  EXPECT_EQ(st.consumers, 1u);
}

TEST_P(MpmcCrashTest, DeadConsumerHoldingTheOnlySlotUnblocksAProducer) {
  // Full queue whose only slot is held by a dead consumer: producers block until a live
  // consumer redelivers it; nothing hangs.
  const std::string name = UniqueShmName("mpmc-cfull");
  auto q = MpmcQueue::Create(name, 2, 16);
  ASSERT_TRUE(q);
  auto tx = q->Producer();
  ASSERT_TRUE(tx->try_push(Bytes("a")));
  ASSERT_TRUE(tx->try_push(Bytes("b")));
  testing::Signal ready;
  pid_t child = ForkChild([&] {
    auto a = MpmcQueue::Attach(name);
    auto rx = a->Consumer();
    auto m = rx->try_claim();
    if (!m) return 3;
    HoldUntilKilled(ready);
  });
  ASSERT_TRUE(ready.Wait());
  ASSERT_NO_FATAL_FAILURE(Kill(child));
  // A producer in another process blocks: the dead consumer's slot is the one it needs.
  pid_t producer = ForkChild([&] {
    auto a = MpmcQueue::Attach(name);
    auto p = a->Producer();
    return p->push(Bytes("c"), WaitOptions::WithTimeout(5s)) ? 0 : 4;
  });
  auto rx = q->Consumer();
  std::vector<std::byte> buf(16);
  auto r = rx->pop(buf, WaitOptions::WithTimeout(2s));
  ASSERT_TRUE(r);
  EXPECT_EQ(Str({buf.data(), r->size}), "b");
  r = rx->pop(buf, WaitOptions::WithTimeout(2s));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(Str({buf.data(), r->size}), "a");
  EXPECT_TRUE(r->redelivered);
  r = rx->pop(buf, WaitOptions::WithTimeout(5s));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(Str({buf.data(), r->size}), "c");
  EXPECT_EQ(WaitChildFor(producer, 5000ms), 0);
  ReapZombie(child, *q);
  MpmcStats st = q->stats();
  EXPECT_EQ(st.redelivered, 1u);
  EXPECT_EQ(st.pushes, 3u);
  EXPECT_EQ(st.pops, 3u);
}

INSTANTIATE_TEST_SUITE_P(ReapedOrZombie, MpmcCrashTest, ::testing::Bool());

}  // namespace
}  // namespace shmlink
