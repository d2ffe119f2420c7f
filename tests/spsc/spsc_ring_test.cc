// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Single-process semantics of SpscRing (wrap, full/empty, sizes, batching, peek/advance,
// close, roles) plus the hostile-segment cases: every corrupted header or ring state must
// come back as a typed error, never a crash or an access outside the mapping.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "tests/spsc/spsc_test_util.h"
#include "tests/test_util.h"

#include <shmlink/segment.h>
#include <shmlink/segment_header.h>
#include <shmlink/spsc_layout.h>
#include <shmlink/spsc_ring.h>

namespace shmlink {
namespace {

using std::chrono::milliseconds;
using testing::Bytes;
using testing::Str;
using testing::TestRing;
using testing::UniqueShmName;

// Data region of `ring`, for bounds checks of the spans handed out.
SpscRegion RegionOf(const SpscRing& ring) {
  auto g = ValidateSpscSegment(ring.segment(), SegmentKind::kSpscRing, 1);
  return SpscRegionAt(ring.segment(), *g, 0);
}

// ------------------------------------------------------------------ basic semantics

TEST(SpscRing, EmptyRingWouldBlock) {
  TestRing f(4096);
  EXPECT_EQ(f.rx->try_peek().error(), RingErrc::kWouldBlock);
  std::byte buf[8];
  EXPECT_EQ(f.rx->try_recv(buf).error(), RingErrc::kWouldBlock);
  EXPECT_EQ(f.rx->size_bytes(), 0u);
}

TEST(SpscRing, SendRecvInOrder) {
  TestRing f(4096);
  ASSERT_TRUE(f.tx->try_send(Bytes("hello")));
  ASSERT_TRUE(f.tx->try_send(Bytes("world!")));
  std::byte buf[64];
  auto n = f.rx->try_recv(buf);
  ASSERT_TRUE(n);
  EXPECT_EQ(Str({buf, *n}), "hello");
  n = f.rx->try_recv(buf);
  ASSERT_TRUE(n);
  EXPECT_EQ(Str({buf, *n}), "world!");
  EXPECT_EQ(f.rx->try_recv(buf).error(), RingErrc::kWouldBlock);
}

TEST(SpscRing, FullRingWouldBlockUntilRelease) {
  TestRing f(4096);
  std::vector<std::byte> msg(64, std::byte{7});
  int sent = 0;
  for (;;) {
    auto r = f.tx->try_send(msg);
    if (!r) {
      EXPECT_EQ(r.error(), RingErrc::kWouldBlock);
      break;
    }
    ++sent;
  }
  // 72-byte records: 56 fit in 4096 bytes; the 57th needs 64 bytes of padding + 72, plus
  // the 8-byte terminator slot the producer always keeps free (spsc_layout.h).
  EXPECT_EQ(sent, 56);
  EXPECT_EQ(f.rx->size_bytes(), 56u * 72);
  ASSERT_TRUE(f.rx->try_peek());
  f.rx->release();
  // One freed record (72) + the 64-byte tail = 136: pad + record fit, the terminator not.
  EXPECT_EQ(f.tx->try_send(msg).error(), RingErrc::kWouldBlock);
  ASSERT_TRUE(f.rx->try_peek());
  f.rx->release();
  // Two freed records: enough for pad + record + terminator, not for one more record.
  EXPECT_TRUE(f.tx->try_send(msg));
  EXPECT_EQ(f.tx->try_send(msg).error(), RingErrc::kWouldBlock);
  for (int i = 0; i < 55; ++i) {
    auto m = f.rx->try_peek();
    ASSERT_TRUE(m) << i;
    EXPECT_EQ(m->size(), 64u);
    f.rx->release();
  }
  EXPECT_EQ(f.rx->try_peek().error(), RingErrc::kWouldBlock);
}

TEST(SpscRing, WrapNeverStraddlesAndPreservesContent) {
  TestRing f(256);
  const SpscRegion region = RegionOf(*f.ring);
  std::mt19937_64 rng(42);
  uint64_t next_send = 0, next_recv = 0;
  const size_t max = f.tx->max_message_size();
  auto size_of = [&](uint64_t seq) { return testing::MessageSize(7, seq, max); };
  while (next_recv < 20000) {
    // Write a random number of messages, then read a random number.
    for (int k = rng() % 4; k >= 0; --k) {
      auto buf = f.tx->try_reserve(size_of(next_send));
      if (!buf) {
        ASSERT_EQ(buf.error(), RingErrc::kWouldBlock);
        break;
      }
      ASSERT_GE(buf->data(), region.data);
      ASSERT_LE(buf->data() + buf->size(), region.data + region.capacity);
      testing::FillMessage(7, next_send++, *buf);
      f.tx->commit();
    }
    for (int k = rng() % 4; k >= 0 && next_recv < next_send; --k) {
      auto m = f.rx->try_peek();
      ASSERT_TRUE(m) << m.error().message();
      ASSERT_GE(m->data(), region.data);
      ASSERT_LE(m->data() + m->size(), region.data + region.capacity);
      ASSERT_EQ(testing::CheckMessage(7, next_recv, max, *m), 0) << next_recv;
      ++next_recv;
      f.rx->release();
    }
  }
}

TEST(SpscRing, MaxMessageSizeFitsAtEveryOffset) {
  TestRing f(1024);
  const size_t max = f.tx->max_message_size();
  EXPECT_EQ(max, 1024u / 2 - 8);
  EXPECT_EQ(f.ring->max_message_size(), max);
  // Shift the write position by 8 bytes each round; the ring is empty each time.
  for (int offset = 0; offset < 1024 / 8 + 2; ++offset) {
    auto big = f.tx->try_reserve(max);
    ASSERT_TRUE(big) << "offset " << offset << ": " << big.error().message();
    std::memset(big->data(), offset, max);
    f.tx->commit();
    auto m = f.rx->try_peek();
    ASSERT_TRUE(m);
    ASSERT_EQ(m->size(), max);
    EXPECT_EQ((*m)[max - 1], std::byte(offset));
    f.rx->release();
    ASSERT_TRUE(f.tx->try_send({}));  // an empty message: 8 bytes of ring
    ASSERT_TRUE(f.rx->try_peek());
    f.rx->release();
  }
}

TEST(SpscRing, OversizeIsAnErrorNotAHang) {
  TestRing f(1024);
  const size_t max = f.tx->max_message_size();
  EXPECT_EQ(f.tx->try_reserve(max + 1).error(), RingErrc::kTooLarge);
  EXPECT_EQ(f.tx->reserve(max + 1).error(), RingErrc::kTooLarge);  // blocking form too
  EXPECT_EQ(f.tx->try_reserve(size_t{1} << 40).error(), RingErrc::kTooLarge);
  std::vector<std::byte> big(max + 1);
  EXPECT_EQ(f.tx->send(big).error(), RingErrc::kTooLarge);
  EXPECT_EQ(f.tx->pending(), 0u);
  EXPECT_EQ(f.rx->try_peek().error(), RingErrc::kWouldBlock);
}

TEST(SpscRing, ZeroLengthMessages) {
  TestRing f(256);
  for (int i = 0; i < 100; ++i) {  // 8 bytes each: wraps several times
    ASSERT_TRUE(f.tx->try_send({}));
    auto m = f.rx->try_peek();
    ASSERT_TRUE(m);
    EXPECT_EQ(m->size(), 0u);
    f.rx->release();
  }
  ASSERT_TRUE(f.tx->try_reserve(0));
  f.tx->commit();
  std::byte buf[1];
  auto n = f.rx->try_recv(std::span<std::byte>(buf, 0));
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 0u);
}

TEST(SpscRing, BatchCommitPublishesAllAtOnce) {
  TestRing f(4096);
  for (int i = 0; i < 5; ++i) {
    auto b = f.tx->try_reserve(4);
    ASSERT_TRUE(b);
    std::memcpy(b->data(), &i, 4);
  }
  EXPECT_EQ(f.tx->pending(), 5u);
  EXPECT_EQ(f.rx->try_peek().error(), RingErrc::kWouldBlock);  // nothing published yet
  f.tx->commit();
  EXPECT_EQ(f.tx->pending(), 0u);
  for (int i = 0; i < 5; ++i) {
    auto m = f.rx->try_peek();
    ASSERT_TRUE(m);
    int v;
    std::memcpy(&v, m->data(), 4);
    EXPECT_EQ(v, i);
    f.rx->release();
  }
  EXPECT_EQ(f.rx->try_peek().error(), RingErrc::kWouldBlock);
}

TEST(SpscRing, CancelDropsPendingReservations) {
  TestRing f(256);
  ASSERT_TRUE(f.tx->try_reserve(100));
  ASSERT_TRUE(f.tx->try_reserve(100));
  f.tx->cancel();
  EXPECT_EQ(f.tx->pending(), 0u);
  f.tx->commit();  // no-op
  EXPECT_EQ(f.rx->try_peek().error(), RingErrc::kWouldBlock);
  // The cancelled space is reusable at once, also across the wrap point.
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(f.tx->try_send(Bytes("x" + std::to_string(i))));
    auto m = f.rx->try_peek();
    ASSERT_TRUE(m);
    EXPECT_EQ(Str(*m), "x" + std::to_string(i));
    f.rx->release();
    ASSERT_TRUE(f.tx->try_reserve(100));
    f.tx->cancel();
  }
}

TEST(SpscRing, AdvanceThenReleaseFreesTheBatch) {
  TestRing f(1024);
  const SpscRegion region = RegionOf(*f.ring);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(f.tx->try_send(Bytes(std::string(100, 'a' + i))));
  const uint64_t before = region.control->read_pos.load();
  for (int i = 0; i < 3; ++i) {
    auto m = f.rx->try_peek();
    ASSERT_TRUE(m);
    EXPECT_EQ(Str(*m), std::string(100, 'a' + i));
    ASSERT_TRUE(f.rx->advance());
  }
  // Advanced messages stay readable in place: the producer cannot reuse them yet.
  EXPECT_EQ(region.control->read_pos.load(), before);
  EXPECT_EQ(f.rx->size_bytes(), 4u * 112);
  f.rx->release();
  EXPECT_EQ(region.control->read_pos.load(), before + 3 * 112);
  auto m = f.rx->try_peek();
  ASSERT_TRUE(m);
  EXPECT_EQ(Str(*m), std::string(100, 'd'));
  f.rx->release();
  EXPECT_EQ(f.rx->size_bytes(), 0u);
}

TEST(SpscRing, PeekIsIdempotentAndAdvanceNeedsAPeek) {
  TestRing f(1024);
  EXPECT_EQ(f.rx->advance().error(), RingErrc::kBadState);
  ASSERT_TRUE(f.tx->try_send(Bytes("one")));
  ASSERT_TRUE(f.tx->try_send(Bytes("two")));
  auto a = f.rx->try_peek();
  auto b = f.rx->try_peek();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->data(), b->data());
  EXPECT_EQ(Str(*b), "one");
  f.rx->release();
  auto c = f.rx->try_peek();
  ASSERT_TRUE(c);
  EXPECT_EQ(Str(*c), "two");
}

TEST(SpscRing, RecvIntoSmallBufferLeavesMessage) {
  TestRing f(1024);
  ASSERT_TRUE(f.tx->try_send(Bytes("0123456789")));
  std::byte small[4];
  EXPECT_EQ(f.rx->try_recv(small).error(), RingErrc::kTooLarge);
  std::byte big[16];
  auto n = f.rx->try_recv(big);
  ASSERT_TRUE(n);
  EXPECT_EQ(Str({big, *n}), "0123456789");
}

TEST(SpscRing, WriterCloseDrainsThenClosed) {
  TestRing f(1024);
  ASSERT_TRUE(f.tx->try_reserve(3));
  f.tx->close();  // commits the pending reservation first
  f.tx->close();  // idempotent
  EXPECT_EQ(f.tx->try_send(Bytes("late")).error(), RingErrc::kClosed);
  auto m = f.rx->try_peek();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->size(), 3u);
  f.rx->release();
  EXPECT_EQ(f.rx->try_peek().error(), RingErrc::kClosed);
  EXPECT_EQ(f.rx->peek().error(), RingErrc::kClosed);  // blocking form returns at once
  EXPECT_EQ(f.rx->try_peek().error(), RingErrc::kClosed);
}

TEST(SpscRing, ReaderCloseFailsWriterOnceFull) {
  TestRing f(256);
  f.rx->close();
  EXPECT_TRUE(f.tx->reader_closed());
  std::vector<std::byte> msg(50);
  Expected<void> r;
  for (int i = 0; i < 10 && r; ++i) r = f.tx->try_send(msg);
  EXPECT_EQ(r.error(), RingErrc::kClosed);
  EXPECT_EQ(f.tx->send(msg).error(), RingErrc::kClosed);  // blocking form does not hang
}

TEST(SpscRing, TimeoutsReturnInTime) {
  TestRing f(256);
  for (auto opts : {WaitOptions::WithTimeout(milliseconds(50)), WaitOptions::Spin(milliseconds(50)),
                    WaitOptions::Sleep(milliseconds(50))}) {
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(f.rx->peek(opts).error(), RingErrc::kTimedOut);
    const auto dt = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(dt, milliseconds(50));
    EXPECT_LT(dt, std::chrono::seconds(2));
  }
  std::vector<std::byte> msg(100);
  while (f.tx->try_send(msg)) {
  }
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(f.tx->send(msg, WaitOptions::WithTimeout(milliseconds(50))).error(),
            RingErrc::kTimedOut);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  // A zero timeout behaves like the try_ form (never sleeps).
  EXPECT_EQ(f.tx->send(msg, WaitOptions::WithTimeout(milliseconds(0))).error(),
            RingErrc::kTimedOut);
}

// ------------------------------------------------------------------ names and creation

TEST(SpscRing, BadNamesAreTypedErrors) {
  for (const std::string& bad : {std::string(""), std::string("/"), std::string("noslash"),
                                 std::string("/a/b"), std::string("/sp ace"), std::string("/star*"),
                                 std::string("/.."), "/" + std::string(255, 'x')}) {
    auto c = SpscRing::Create(bad, 4096);
    ASSERT_FALSE(c) << bad;
    EXPECT_EQ(c.error(), RingErrc::kInvalidName) << bad;
    auto a = SpscRing::Attach(bad);
    ASSERT_FALSE(a) << bad;
    EXPECT_EQ(a.error(), RingErrc::kInvalidName) << bad;
  }
  auto missing = SpscRing::Attach(UniqueShmName("missing"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), std::errc::no_such_file_or_directory);
}

TEST(SpscRing, BadCapacities) {
  const std::string name = UniqueShmName("cap");
  for (uint64_t cap :
       {uint64_t{0}, uint64_t{100}, uint64_t{128}, uint64_t{4095}, uint64_t{1} << 33}) {
    auto r = SpscRing::Create(name, cap);
    ASSERT_FALSE(r) << cap;
    EXPECT_EQ(r.error(), RingErrc::kInvalidArgument) << cap;
  }
}

TEST(SpscRing, CreateIsExclusiveWhileTheCreatorLives) {
  TestRing f(4096);
  auto again = SpscRing::Create(f.name, 4096);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), std::errc::file_exists);
}

TEST(SpscRing, StaleSegmentOfDeadCreatorIsReclaimed) {
  const std::string name = UniqueShmName("stale");
  pid_t child = testing::ForkChild([&] {
    SpscRing::CreateOptions keep;
    keep.unlink = UnlinkPolicy::kKeep;
    auto r = SpscRing::Create(name, 4096, keep);
    return r ? 0 : 1;
  });
  ASSERT_EQ(testing::WaitChild(child), 0);
  SpscRing::CreateOptions no_reclaim;
  no_reclaim.reclaim_stale = false;
  auto refused = SpscRing::Create(name, 4096, no_reclaim);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), std::errc::file_exists);
  auto r = SpscRing::Create(name, 8192);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->capacity(), 8192u);
}

// ------------------------------------------------------------------ roles

TEST(SpscRing, SecondClaimOfARoleIsRefused) {
  TestRing f(4096);
  EXPECT_EQ(f.ring->Producer().error(), RingErrc::kRoleTaken);
  EXPECT_EQ(f.ring->Consumer().error(), RingErrc::kRoleTaken);
  // Another live process is refused too.
  auto attached = SpscRing::Attach(f.name);
  ASSERT_TRUE(attached);
  pid_t child = testing::ForkChild([&] {
    auto r = SpscRing::Attach(f.name);
    if (!r) return 1;
    if (r->Producer().error() != RingErrc::kRoleTaken) return 2;
    if (r->Consumer().error() != RingErrc::kRoleTaken) return 3;
    return 0;
  });
  EXPECT_EQ(testing::WaitChild(child), 0);
  // Dropping the handle frees the role.
  f.tx.reset();
  auto p = attached->Producer();
  EXPECT_TRUE(p) << p.error().message();
}

TEST(SpscRing, DeadProducersRoleIsTakenOverAndResumes) {
  TestRing f(4096, "deadprod", TestRing::kConsumer);
  pid_t child = testing::ForkChild([&] {
    auto r = SpscRing::Attach(f.name);
    if (!r) return 1;
    auto tx = r->Producer();
    if (!tx) return 2;
    if (!tx->try_send(Bytes("committed"))) return 3;
    if (!tx->try_reserve(10)) return 4;  // never committed: lost with the process
    ::_exit(0);                          // dies holding the role (no destructors)
  });
  ASSERT_EQ(testing::WaitChild(child), 0);
  auto tx = f.ring->Producer();
  ASSERT_TRUE(tx) << tx.error().message();
  ASSERT_TRUE(tx->try_send(Bytes("after")));
  auto m = f.rx->try_peek();
  ASSERT_TRUE(m);
  EXPECT_EQ(Str(*m), "committed");
  f.rx->release();
  m = f.rx->try_peek();
  ASSERT_TRUE(m);
  EXPECT_EQ(Str(*m), "after");
}

// The producer died after publishing a batch's first header but before storing write_pos
// (simulated by rolling write_pos back): its successor follows the published headers and
// resumes after them, so nothing is overwritten or delivered twice.
TEST(SpscRing, ProducerTakeoverFinishesAnInterruptedCommit) {
  TestRing f(1024);
  const SpscRegion region = RegionOf(*f.ring);
  ASSERT_TRUE(f.tx->try_send(Bytes("first")));
  uint64_t before = 0;
  for (int i = 0; i < 20; ++i) {  // a batch that wraps (padding record inside)
    auto b = f.tx->try_reserve(56);
    ASSERT_TRUE(b) << i;
    std::memset(b->data(), 'a' + i, b->size());
    if (i == 9) {
      f.tx->commit();
      while (f.rx->try_peek()) f.rx->release();  // make room: the batch must wrap
      before = region.control->write_pos.load();
    }
  }
  f.tx->commit();
  const uint64_t after = region.control->write_pos.load();
  region.control->write_pos.store(before);  // as if the write_pos store never happened
  f.tx.reset();
  auto tx = f.ring->Producer();
  ASSERT_TRUE(tx);
  EXPECT_EQ(region.control->write_pos.load(), after);
  ASSERT_TRUE(tx->try_send(Bytes("next")));
  for (int i = 10; i < 20; ++i) {
    auto m = f.rx->try_peek();
    ASSERT_TRUE(m) << i << ": " << m.error().message();
    EXPECT_EQ(Str(*m), std::string(56, 'a' + i));
    f.rx->release();
  }
  auto m = f.rx->try_peek();
  ASSERT_TRUE(m);
  EXPECT_EQ(Str(*m), "next");
  f.rx->release();
  EXPECT_EQ(f.rx->try_peek().error(), RingErrc::kWouldBlock);
}

// Payloads made entirely of words that look like valid headers (of every size) are left
// behind lap after lap; the consumer must still see exactly the committed messages and
// kWouldBlock in between: stale bytes at its position are never taken for a header.
TEST(SpscRing, StaleHeaderLookalikesFromEarlierLapsAreNeverDelivered) {
  TestRing f(256);
  std::mt19937_64 rng(7);
  const size_t max = f.tx->max_message_size();
  uint64_t sent = 0, received = 0;
  for (int round = 0; round < 5000; ++round) {
    for (int k = rng() % 3; k >= 0; --k) {
      const size_t n = rng() % (max + 1);
      auto b = f.tx->try_reserve(n);
      if (!b) {
        ASSERT_EQ(b.error(), RingErrc::kWouldBlock);
        break;
      }
      for (size_t off = 0; off + 8 <= n; off += 8) {
        const uint64_t w = MakeRecordWord(rng() % 2 ? kRecordData : kRecordPadding,
                                          static_cast<uint32_t>(rng() % 128));
        std::memcpy(b->data() + off, &w, 8);
      }
      if (n >= 8) std::memcpy(b->data(), &sent, 8);  // sequence number in the first word
      ++sent;
      if (rng() % 2) f.tx->commit();
    }
    if (rng() % 4 == 0) f.tx->commit();
    const uint64_t committed = sent - f.tx->pending();
    while (received < committed) {
      auto m = f.rx->try_peek();
      ASSERT_TRUE(m) << received << ": " << m.error().message();
      if (m->size() >= 8) {
        uint64_t seq;
        std::memcpy(&seq, m->data(), 8);
        ASSERT_EQ(seq, received);
      }
      ++received;
      if (rng() % 2) {
        ASSERT_TRUE(f.rx->advance());
      } else {
        f.rx->release();
      }
    }
    ASSERT_EQ(f.rx->try_peek().error(), RingErrc::kWouldBlock) << "phantom after " << received;
    f.rx->release();
  }
  EXPECT_GT(received, 1000u);
}

TEST(SpscRing, KilledConsumersRoleIsTakenOverAndUnreleasedMessagesRedelivered) {
  TestRing f(4096, "deadcons", TestRing::kProducer);
  ASSERT_TRUE(f.tx->try_send(Bytes("first")));
  ASSERT_TRUE(f.tx->try_send(Bytes("second")));
  testing::Signal ready;
  pid_t child = fork();
  if (child == 0) {
    auto r = SpscRing::Attach(f.name);
    if (!r) ::_exit(1);
    auto rx = r->Consumer();
    if (!rx) ::_exit(2);
    if (!rx->try_peek()) ::_exit(3);
    rx->release();                                      // "first" consumed
    if (!rx->try_peek() || !rx->advance()) ::_exit(4);  // "second" advanced, not released
    ready.Notify();
    ::pause();
    ::_exit(5);
  }
  ASSERT_TRUE(ready.Wait());
  EXPECT_EQ(f.ring->Consumer().error(), RingErrc::kRoleTaken);
  ::kill(child, SIGKILL);
  EXPECT_EQ(testing::WaitChild(child), 128 + SIGKILL);
  auto rx = f.ring->Consumer();
  ASSERT_TRUE(rx) << rx.error().message();
  auto m = rx->try_peek();
  ASSERT_TRUE(m);
  EXPECT_EQ(Str(*m), "second");  // at-least-once: only released messages are gone
}

// A moved-from ring or handle holds nothing: every call is a typed error or a no-op, never
// a dereference of the moved-away mapping, and the moved-to object works on.
TEST(SpscRing, MovedFromRingAndHandlesAreBadStateNotACrash) {
  TestRing f(4096, "moved");
  SpscRing ring = std::move(*f.ring);
  EXPECT_EQ(f.ring->Producer().error(), RingErrc::kBadState);
  EXPECT_EQ(f.ring->Consumer().error(), RingErrc::kBadState);
  EXPECT_EQ(f.ring->Unlink().error(), RingErrc::kBadState);
  EXPECT_EQ(f.ring->segment().data(), nullptr);
  EXPECT_EQ(f.ring->capacity(), 0u);
  EXPECT_EQ(ring.capacity(), 4096u);

  ASSERT_TRUE(f.tx->try_reserve(16));  // pending: must not be published by the source
  SpscProducer tx = std::move(*f.tx);
  SpscProducer& old_tx = *f.tx;
  EXPECT_EQ(old_tx.try_reserve(8).error(), RingErrc::kBadState);
  EXPECT_EQ(old_tx.reserve(8, WaitOptions::WithTimeout(milliseconds(10))).error(),
            RingErrc::kBadState);
  EXPECT_EQ(old_tx.try_send(Bytes("x")).error(), RingErrc::kBadState);
  EXPECT_EQ(old_tx.send(Bytes("x")).error(), RingErrc::kBadState);
  EXPECT_EQ(old_tx.pending(), 0u);
  old_tx.commit();
  old_tx.cancel();
  old_tx.close();
  EXPECT_FALSE(old_tx.reader_closed());

  ASSERT_TRUE(tx.try_send(Bytes("one")));  // commits the pending reservation too
  ASSERT_TRUE(tx.try_send(Bytes("two")));
  ASSERT_TRUE(f.rx->try_peek());
  ASSERT_TRUE(f.rx->advance());  // advanced, not released: the source must not release it
  SpscConsumer rx = std::move(*f.rx);
  SpscConsumer& old_rx = *f.rx;
  EXPECT_EQ(old_rx.try_peek().error(), RingErrc::kBadState);
  EXPECT_EQ(old_rx.peek(WaitOptions::WithTimeout(milliseconds(10))).error(), RingErrc::kBadState);
  std::byte buf[64];
  EXPECT_EQ(old_rx.try_recv(buf).error(), RingErrc::kBadState);
  EXPECT_EQ(old_rx.recv(buf).error(), RingErrc::kBadState);
  EXPECT_EQ(old_rx.advance().error(), RingErrc::kBadState);
  EXPECT_EQ(old_rx.fd().error(), RingErrc::kBadState);
  EXPECT_EQ(old_rx.size_bytes(), 0u);
  old_rx.release();
  old_rx.close();

  // The moved-to handles own the stream: the 16-byte reservation (advanced past), "one",
  // "two".
  for (const char* want : {"one", "two"}) {
    auto m = rx.try_peek();
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_EQ(Str(*m), want);
    rx.release();
  }
  EXPECT_EQ(rx.try_peek().error(), RingErrc::kWouldBlock);
  // Claims through a fresh ring still see the roles held by the moved-to handles.
  EXPECT_EQ(ring.Producer().error(), RingErrc::kRoleTaken);
  EXPECT_EQ(ring.Consumer().error(), RingErrc::kRoleTaken);
  // Claims without a segment or region are typed errors too.
  EXPECT_EQ(SpscProducer::Claim(nullptr, SpscRegion{}).error(), RingErrc::kInvalidArgument);
  EXPECT_EQ(SpscConsumer::Claim(nullptr, SpscRegion{}).error(), RingErrc::kInvalidArgument);
}

// ------------------------------------------------------------------ hostile headers

class HostileHeader : public ::testing::Test {
 protected:
  void SetUp() override {
    name_ = UniqueShmName("hostile");
    auto r = SpscRing::Create(name_, 4096);
    ASSERT_TRUE(r);
    ring_.emplace(std::move(*r));
    auto raw = Segment::Open(name_);
    ASSERT_TRUE(raw);
    raw_.emplace(std::move(*raw));
    header_ = reinterpret_cast<SegmentHeader*>(raw_->data());
  }
  std::error_code AttachError() {
    auto a = SpscRing::Attach(name_);
    return a ? std::error_code() : a.error();
  }
  void Reseal() { header_->checksum = HeaderChecksum(header_); }

  std::string name_;
  std::optional<SpscRing> ring_;
  std::optional<Segment> raw_;
  SegmentHeader* header_ = nullptr;
};

TEST_F(HostileHeader, IntactHeaderAttaches) { EXPECT_FALSE(AttachError()); }

TEST_F(HostileHeader, EveryFlippedByteIsDetected) {
  auto* bytes = reinterpret_cast<unsigned char*>(header_);
  for (size_t off = 0; off < offsetof(SegmentHeader, checksum) + 8; ++off) {
    bytes[off] ^= 0x5a;
    const std::error_code e = AttachError();
    if (off < 8) {
      EXPECT_EQ(e, RingErrc::kBadMagic) << off;
    } else if (off < 12) {
      EXPECT_EQ(e, RingErrc::kBadVersion) << off;
    } else {
      EXPECT_EQ(e, RingErrc::kBadChecksum) << off;
    }
    bytes[off] ^= 0x5a;
  }
  EXPECT_FALSE(AttachError());
}

TEST_F(HostileHeader, WrongVersionWithValidChecksum) {
  header_->version = kLayoutVersion + 1;
  Reseal();
  EXPECT_EQ(AttachError(), RingErrc::kBadVersion);
}

TEST_F(HostileHeader, WrongKindWithValidChecksum) {
  header_->kind = static_cast<uint32_t>(SegmentKind::kMpmcQueue);
  Reseal();
  EXPECT_EQ(AttachError(), RingErrc::kWrongKind);
}

TEST_F(HostileHeader, HugeOrInconsistentGeometryWithValidChecksum) {
  unsigned char saved[sizeof(SegmentHeader)];
  std::memcpy(saved, header_, sizeof(saved));
  struct Case {
    int index;
    uint64_t value;
  };
  for (Case c : {Case{1, uint64_t{1} << 62}, Case{1, uint64_t{1} << 40}, Case{1, 8192},
                 Case{1, 4095}, Case{1, 0}, Case{0, 2}, Case{0, 0}, Case{2, 0}, Case{3, 64},
                 Case{4, 0}, Case{4, ~uint64_t{0}}, Case{7, 1}}) {
    header_->geometry[c.index] = c.value;
    Reseal();
    EXPECT_EQ(AttachError(), RingErrc::kBadGeometry) << c.index << "=" << c.value;
    std::memcpy(static_cast<void*>(header_), saved, offsetof(SegmentHeader, ready));
  }
  header_->total_size = uint64_t{1} << 62;  // claims more than the file holds
  Reseal();
  EXPECT_EQ(AttachError(), RingErrc::kTruncated);
  header_->total_size = 512;  // claims less than the file holds
  Reseal();
  EXPECT_EQ(AttachError(), RingErrc::kBadGeometry);
}

TEST_F(HostileHeader, TruncatedFile) {
  const off_t full = static_cast<off_t>(raw_->size());
  // Attachers map the file's current size; the header says more.
  for (off_t size : {full - 4096, off_t{4096}, off_t{255}, off_t{1}}) {
    ASSERT_EQ(::ftruncate(raw_->fd(), size), 0);
    EXPECT_EQ(AttachError(), RingErrc::kTruncated) << size;
  }
  ASSERT_EQ(::ftruncate(raw_->fd(), 0), 0);
  EXPECT_EQ(AttachError(), RingErrc::kTruncated);
  // Larger than the header says is inconsistent too.
  // Growing it back leaves zeros: a segment that looks mid-initialisation.
  ASSERT_EQ(::ftruncate(raw_->fd(), full), 0);
  EXPECT_EQ(AttachError(), RingErrc::kNotReady);
  raw_.reset();   // its mapping is now larger than the file: never touch it again
  ring_.reset();  // same for the creator's (only unmapped and unlinked)
}

TEST_F(HostileHeader, OversizedFile) {
  ASSERT_EQ(::ftruncate(raw_->fd(), static_cast<off_t>(raw_->size() + 4096)), 0);
  EXPECT_EQ(AttachError(), RingErrc::kBadGeometry);
}

TEST_F(HostileHeader, NotReady) {
  header_->ready.store(0);
  EXPECT_EQ(AttachError(), RingErrc::kNotReady);
  // A freshly created, zero-filled segment (creator still initialising).
  const std::string zero_name = UniqueShmName("zero");
  auto zero = Segment::Create(zero_name, 8192, UnlinkPolicy::kUnlinkOnDestroy);
  ASSERT_TRUE(zero);
  auto a = SpscRing::Attach(zero_name);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error(), RingErrc::kNotReady);
}

TEST_F(HostileHeader, ForeignFileIsBadMagic) {
  const std::string other = UniqueShmName("foreign");
  auto seg = Segment::Create(other, 8192, UnlinkPolicy::kUnlinkOnDestroy);
  ASSERT_TRUE(seg);
  std::memset(seg->data(), 0xab, seg->size());
  auto a = SpscRing::Attach(other);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error(), RingErrc::kBadMagic);
}

// ------------------------------------------------------------------ not a segment at all

// A FIFO, directory or symlink planted under a shm name (removed again by ~Planted).
struct Planted {
  explicit Planted(std::string tag) : name(UniqueShmName(tag)), path("/dev/shm" + name) {}
  ~Planted() {
    ::unlink(path.c_str());
    ::rmdir(path.c_str());
  }
  std::string name;
  std::string path;
};

TEST(SegmentOpen, NonRegularFilesAreWrongKindNotTruncatedOrAHang) {
  Planted fifo("fifo");
  ASSERT_EQ(::mkfifo(fifo.path.c_str(), 0600), 0) << std::strerror(errno);
  // Opened without blocking (no writer ever comes), then refused by type, not by size.
  auto f = Segment::Open(fifo.name);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error(), RingErrc::kWrongKind) << f.error().message();
  EXPECT_EQ(SpscRing::Attach(fifo.name).error(), RingErrc::kWrongKind);

  Planted dir("dir");
  ASSERT_EQ(::mkdir(dir.path.c_str(), 0700), 0) << std::strerror(errno);
  auto d = Segment::Open(dir.name);  // glibc's shm_open says EINVAL for a directory
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error(), RingErrc::kWrongKind) << d.error().message();

  const std::string real = UniqueShmName("real");
  auto seg = Segment::Create(real, 4096, UnlinkPolicy::kUnlinkOnDestroy);
  ASSERT_TRUE(seg);
  Planted link("link");
  ASSERT_EQ(::symlink(("/dev/shm" + real).c_str(), link.path.c_str()), 0);
  EXPECT_EQ(Segment::Open(link.name).error(), RingErrc::kWrongKind);

  // Still only for names that exist: absent stays ENOENT, and a real segment opens.
  EXPECT_EQ(Segment::Open(UniqueShmName("absent")).error(), std::errc::no_such_file_or_directory);
  auto ok = Segment::Open(real);
  ASSERT_TRUE(ok);
  EXPECT_EQ(::fcntl(ok->fd(), F_GETFL) & O_NONBLOCK, 0);  // fd() is left blocking
}

TEST(SegmentOpen, FromFdRefusesAPipe) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  auto s = Segment::FromFd(p[0]);  // takes p[0] and closes it
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), RingErrc::kWrongKind);
  ::close(p[1]);
}

// ------------------------------------------------------------------ corrupt ring state

class CorruptRing : public ::testing::Test {
 protected:
  void SetUp() override {
    name_ = UniqueShmName("corrupt");
    auto r = SpscRing::Create(name_, 4096);
    ASSERT_TRUE(r);
    ring_.emplace(std::move(*r));
    auto g = ValidateSpscSegment(ring_->segment(), SegmentKind::kSpscRing, 1);
    ASSERT_TRUE(g);
    region_ = SpscRegionAt(ring_->segment(), *g, 0);
  }
  RecordHeader* RecordAt(uint64_t idx) {
    return reinterpret_cast<RecordHeader*>(region_.data + idx);
  }
  std::string name_;
  std::optional<SpscRing> ring_;
  SpscRegion region_;
};

// The consumer never reads write_pos (it polls the header word at its own position), so a
// scribbled write_pos cannot mislead it; the producer, which resumes from it, rejects it.
TEST_F(CorruptRing, WritePosBeyondCapacity) {
  auto rx = ring_->Consumer();
  ASSERT_TRUE(rx);
  region_.control->write_pos.store(region_.capacity + 8);
  EXPECT_EQ(rx->try_peek().error(), RingErrc::kWouldBlock);  // the terminator at 0
  auto tx = ring_->Producer();
  ASSERT_TRUE(tx);
  EXPECT_EQ(tx->try_reserve(8).error(), RingErrc::kCorrupt);
  EXPECT_EQ(tx->reserve(8).error(), RingErrc::kCorrupt);  // blocking form returns at once
}

// read_pos up to one batch (capacity - 8 bytes) past write_pos is what a producer killed
// between publishing a batch's header and storing write_pos leaves once the consumer has
// drained the batch (a published header is a commit, spsc_layout.h): a new producer
// resumes at the end of the stream, past read_pos.
TEST_F(CorruptRing, WritePosBehindReadPosByOneBatchIsResumed) {
  region_.control->read_pos.store(64);
  region_.control->write_pos.store(32);
  auto rx = ring_->Consumer();
  ASSERT_TRUE(rx);
  EXPECT_EQ(rx->try_peek().error(), RingErrc::kWouldBlock);  // the zero word at 64
  auto tx = ring_->Producer();
  ASSERT_TRUE(tx);
  EXPECT_EQ(region_.control->write_pos.load(), 64u);
  ASSERT_TRUE(tx->try_send(Bytes("resumed")));
  auto m = rx->try_peek();
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(Str(*m), "resumed");
}

// No intact producer can leave read_pos more than capacity - 8 bytes past write_pos (one
// batch at most is published without its write_pos store), nor a misaligned read_pos.
TEST_F(CorruptRing, WritePosBehindReadPosByMoreThanABatch) {
  region_.control->read_pos.store(32 + region_.capacity);
  region_.control->write_pos.store(32);
  {
    auto tx = ring_->Producer();
    ASSERT_TRUE(tx);
    EXPECT_EQ(tx->try_reserve(8).error(), RingErrc::kCorrupt);
    EXPECT_EQ(region_.control->write_pos.load(), 32u);  // nothing written on a corrupt ring
  }
  region_.control->read_pos.store(36);
  {
    auto tx = ring_->Producer();
    ASSERT_TRUE(tx);
    EXPECT_EQ(tx->try_reserve(8).error(), RingErrc::kCorrupt);
  }
  // Ahead by one batch, but the chain of headers from read_pos runs past a ring's worth.
  region_.control->read_pos.store(64);
  RecordAt(64)->length = static_cast<uint32_t>(region_.capacity - 64 - 8);
  RecordAt(64)->type = kRecordPadding;
  RecordAt(0)->length = static_cast<uint32_t>(region_.capacity / 2 - 8);
  RecordAt(0)->type = kRecordData;
  RecordAt(region_.capacity / 2)->length = static_cast<uint32_t>(region_.capacity / 2 - 16);
  RecordAt(region_.capacity / 2)->type = kRecordData;
  auto tx = ring_->Producer();
  ASSERT_TRUE(tx);
  EXPECT_EQ(tx->try_reserve(8).error(), RingErrc::kCorrupt);
}

// A record whose end (plus the terminator slot) lies more than capacity past the consumer's
// released position cannot come from an intact producer.
TEST_F(CorruptRing, RecordChainLongerThanTheRing) {
  auto rx = ring_->Consumer();
  ASSERT_TRUE(rx);
  // Padding records at 0 covering the whole ring, again and again.
  RecordAt(0)->length = static_cast<uint32_t>(region_.capacity - 8);
  RecordAt(0)->type = kRecordPadding;
  EXPECT_EQ(rx->try_peek().error(), RingErrc::kCorrupt);
}

TEST_F(CorruptRing, MisalignedReadPos) {
  // The record header would be read across the end of the data region (and the mapping).
  region_.control->read_pos.store(region_.capacity - 4);
  region_.control->write_pos.store(region_.capacity + 16);
  auto rx = ring_->Consumer();
  ASSERT_TRUE(rx);
  EXPECT_EQ(rx->try_peek().error(), RingErrc::kCorrupt);
}

TEST_F(CorruptRing, MisalignedWritePos) {
  // A producer resuming here would write a record header across the end of the region.
  region_.control->read_pos.store(region_.capacity - 4);
  region_.control->write_pos.store(region_.capacity - 4);
  auto tx = ring_->Producer();
  ASSERT_TRUE(tx);
  EXPECT_EQ(tx->try_reserve(1).error(), RingErrc::kCorrupt);
  EXPECT_EQ(tx->reserve(1).error(), RingErrc::kCorrupt);
}

TEST_F(CorruptRing, WritePosTooFarAheadForANewProducer) {
  region_.control->write_pos.store(2 * region_.capacity);
  auto tx = ring_->Producer();
  ASSERT_TRUE(tx);
  EXPECT_EQ(tx->reserve(8, WaitOptions::WithTimeout(std::chrono::seconds(5))).error(),
            RingErrc::kCorrupt);  // not a wait for space that never comes
}

TEST_F(CorruptRing, RecordLengthFlipped) {
  auto tx = ring_->Producer();
  auto rx = ring_->Consumer();
  ASSERT_TRUE(tx && rx);
  ASSERT_TRUE(tx->try_send(Bytes("payload")));
  RecordAt(0)->length ^= 0x00100000;  // now far beyond the committed bytes
  EXPECT_EQ(rx->try_peek().error(), RingErrc::kCorrupt);
  RecordAt(0)->length = 4000;  // fits the ring, not the committed bytes
  EXPECT_EQ(rx->try_peek().error(), RingErrc::kCorrupt);
}

TEST_F(CorruptRing, BadPaddingRecord) {
  auto tx = ring_->Producer();
  auto rx = ring_->Consumer();
  ASSERT_TRUE(tx && rx);
  ASSERT_TRUE(tx->try_send(Bytes("x")));
  RecordAt(0)->type = kRecordPadding;  // padding that does not reach the end of the ring
  EXPECT_EQ(rx->try_peek().error(), RingErrc::kCorrupt);
}

TEST_F(CorruptRing, BadRecordTypeWrittenByAnotherProcess) {
  auto tx = ring_->Producer();
  auto rx = ring_->Consumer();
  ASSERT_TRUE(tx && rx);
  ASSERT_TRUE(tx->try_send(Bytes("good")));
  ASSERT_TRUE(tx->try_send(Bytes("victim")));
  ASSERT_TRUE(rx->try_peek());
  rx->release();
  pid_t child = testing::ForkChild([&] {
    auto seg = Segment::Open(name_);
    if (!seg) return 1;
    auto g = ValidateSpscSegment(*seg, SegmentKind::kSpscRing, 1);
    if (!g) return 2;
    SpscRegion r = SpscRegionAt(*seg, *g, 0);
    const uint64_t idx = r.control->read_pos.load() & (r.capacity - 1);
    reinterpret_cast<RecordHeader*>(r.data + idx)->type = 0xdeadbeef;
    return 0;
  });
  ASSERT_EQ(testing::WaitChild(child), 0);
  EXPECT_EQ(rx->try_peek().error(), RingErrc::kCorrupt);
}

TEST_F(CorruptRing, RandomGarbageNeverReadsOutOfBounds) {
  // Random records and positions: every peek either returns a span inside the data region
  // or a typed error. (The data region ends the mapping, so a stray read would fault.)
  std::mt19937_64 rng(1234);
  const int rounds = testing::kSanitized ? 300 : 3000;
  for (int round = 0; round < rounds; ++round) {
    auto* words = reinterpret_cast<uint32_t*>(region_.data);
    for (uint64_t i = 0; i < region_.capacity / 4; ++i) {
      const uint32_t pick = rng() % 8;
      words[i] = pick == 0   ? kRecordData
                 : pick == 1 ? kRecordPadding
                 : pick < 5  ? static_cast<uint32_t>(rng() % 5000)
                             : static_cast<uint32_t>(rng());
    }
    const uint64_t base = (rng() % 4) * region_.capacity;
    const uint64_t r = base + (rng() % 3 == 0 ? rng() % region_.capacity
                                              : (rng() % region_.capacity) & ~uint64_t{7});
    const uint64_t w = r + rng() % (region_.capacity + 64);
    region_.control->read_pos.store(r);
    region_.control->write_pos.store(w);
    auto rx = ring_->Consumer();
    ASSERT_TRUE(rx);
    for (int k = 0; k < 64; ++k) {
      auto m = rx->try_peek();
      if (!m) {
        ASSERT_TRUE(m.error() == RingErrc::kCorrupt || m.error() == RingErrc::kWouldBlock)
            << m.error().message();
        break;
      }
      ASSERT_GE(m->data(), region_.data);
      ASSERT_LE(m->data() + m->size(), region_.data + region_.capacity);
      volatile std::byte sink{};
      for (std::byte b : *m) sink = b;  // touch every byte
      (void)sink;
      rx->release();
    }
  }
}

}  // namespace
}  // namespace shmlink
