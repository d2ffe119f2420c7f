// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Topic semantics in one process (the segment is real POSIX shm): delivery to every
// subscriber, history for late joiners, overwrite lapping with exact loss counts, the
// block policy's back-pressure, typed topics, hostile headers, close and the event fd.
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <vector>

#include "tests/spsc/spsc_test_util.h"
#include "tests/test_util.h"

#include <shmlink/topic.h>

namespace shmlink {
namespace {

using testing::CheckMessage;
using testing::FillMessage;
using testing::MessageSize;
using testing::UniqueShmName;

constexpr uint64_t kSeed = 0x70b1c;

template <typename T>
T Must(Expected<T> r) {
  if (!r) {
    ADD_FAILURE() << r.error().message();
    std::abort();
  }
  return std::move(*r);
}

TopicOptions Options(TopicPolicy policy, uint64_t capacity = 1 << 16, uint64_t history = 0) {
  TopicOptions o;
  o.capacity = capacity;
  o.policy = policy;
  o.history = history;
  return o;
}

Expected<uint64_t> SendSeq(
    TopicPublisher& pub, uint64_t seq, size_t max_size,
    const WaitOptions& opts = WaitOptions::WithTimeout(std::chrono::seconds(5))) {
  const size_t n = MessageSize(kSeed, seq, max_size);
  auto buf = pub.loan(n, opts);
  if (!buf) return MakeUnexpected(buf.error());
  FillMessage(kSeed, seq, *buf);
  return pub.publish();
}

// Receives one message and checks it is exactly message `seq`.
void ExpectSeq(TopicSubscriber& sub, uint64_t seq, size_t max_size) {
  auto m = sub.try_receive();
  ASSERT_TRUE(m) << m.error().message() << " expecting " << seq;
  EXPECT_EQ(m->seq, seq);
  EXPECT_EQ(CheckMessage(kSeed, seq, max_size, m->data), 0) << "seq " << seq;
  ASSERT_TRUE(sub.release());
}

class PolicyTest : public ::testing::TestWithParam<TopicPolicy> {};

TEST_P(PolicyTest, EverySubscriberSeesEveryMessageInOrder) {
  const std::string name = UniqueShmName("topic");
  auto topic = Must(Topic::Create(name, Options(GetParam())));
  auto pub = Must(topic.Publisher());
  std::vector<TopicSubscriber> subs;
  for (int i = 0; i < 3; ++i) subs.push_back(Must(topic.Subscriber()));
  EXPECT_EQ(topic.subscriber_count(), 3u);
  const size_t max = 600;
  // Many laps of the 64 KiB log with variable sizes (padding at the wrap), reading as we go.
  for (uint64_t seq = 0; seq < 3000; ++seq) {
    ASSERT_EQ(*SendSeq(pub, seq, max), seq);
    for (auto& s : subs) ExpectSeq(s, seq, max);
  }
  for (auto& s : subs) EXPECT_EQ(s.try_receive().error(), RingErrc::kWouldBlock);
  EXPECT_EQ(topic.published(), 3000u);
}

TEST_P(PolicyTest, LateJoinerReceivesTheLastKMessagesFirst) {
  const std::string name = UniqueShmName("topic-hist");
  auto topic = Must(Topic::Create(name, Options(GetParam(), 1 << 16, 5)));
  auto pub = Must(topic.Publisher());
  for (uint64_t seq = 0; seq < 20; ++seq) ASSERT_TRUE(SendSeq(pub, seq, 200));
  auto late = Must(topic.Subscriber());
  EXPECT_EQ(late.next_sequence(), 15u);
  for (uint64_t seq = 15; seq < 20; ++seq) ExpectSeq(late, seq, 200);
  EXPECT_EQ(late.try_receive().error(), RingErrc::kWouldBlock);
  ASSERT_TRUE(SendSeq(pub, 20, 200));
  ExpectSeq(late, 20, 200);
}

TEST_P(PolicyTest, HistoryShorterThanKWhenFewerWerePublished) {
  auto topic = Must(Topic::Create(UniqueShmName("topic-h2"), Options(GetParam(), 1 << 16, 8)));
  auto pub = Must(topic.Publisher());
  for (uint64_t seq = 0; seq < 3; ++seq) ASSERT_TRUE(SendSeq(pub, seq, 200));
  auto late = Must(topic.Subscriber());
  for (uint64_t seq = 0; seq < 3; ++seq) ExpectSeq(late, seq, 200);
}

TEST_P(PolicyTest, WithoutHistoryAJoinerStartsAtTheNextMessage) {
  auto topic = Must(Topic::Create(UniqueShmName("topic-h0"), Options(GetParam())));
  auto pub = Must(topic.Publisher());
  for (uint64_t seq = 0; seq < 10; ++seq) ASSERT_TRUE(SendSeq(pub, seq, 200));
  auto sub = Must(topic.Subscriber());
  EXPECT_EQ(sub.try_receive().error(), RingErrc::kWouldBlock);
  ASSERT_TRUE(SendSeq(pub, 10, 200));
  ExpectSeq(sub, 10, 200);
}

TEST_P(PolicyTest, CloseIsSeenAfterDrainingAndASuccessorReopens) {
  auto topic = Must(Topic::Create(UniqueShmName("topic-close"), Options(GetParam())));
  auto sub = Must(topic.Subscriber());
  {
    auto pub = Must(topic.Publisher());
    ASSERT_TRUE(SendSeq(pub, 0, 100));
    pub.close();
    EXPECT_EQ(pub.try_loan(8).error(), RingErrc::kClosed);
  }
  ExpectSeq(sub, 0, 100);
  EXPECT_EQ(sub.receive(WaitOptions::WithTimeout(std::chrono::seconds(1))).error(),
            RingErrc::kClosed);
  auto next = Must(topic.Publisher());
  EXPECT_EQ(next.next_sequence(), 1u);
  ASSERT_TRUE(SendSeq(next, 1, 100));
  ExpectSeq(sub, 1, 100);
}

TEST_P(PolicyTest, SecondLivePublisherIsRefusedAndTheNextResumes) {
  auto topic = Must(Topic::Create(UniqueShmName("topic-role"), Options(GetParam())));
  auto sub = Must(topic.Subscriber());
  {
    auto pub = Must(topic.Publisher());
    EXPECT_EQ(topic.Publisher().error(), RingErrc::kRoleTaken);
    for (uint64_t seq = 0; seq < 4; ++seq) ASSERT_TRUE(SendSeq(pub, seq, 100));
  }
  auto pub = Must(topic.Publisher());
  EXPECT_EQ(pub.next_sequence(), 4u);
  ASSERT_TRUE(SendSeq(pub, 4, 100));
  for (uint64_t seq = 0; seq < 5; ++seq) ExpectSeq(sub, seq, 100);
}

TEST_P(PolicyTest, EventFdBecomesReadableOnPublish) {
  auto topic = Must(Topic::Create(UniqueShmName("topic-fd"), Options(GetParam())));
  auto pub = Must(topic.Publisher());
  auto sub = Must(topic.Subscriber());
  const int fd = Must(sub.fd());
  uint64_t v;
  // Drain the initial "maybe pending" signal.
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1);
  ASSERT_EQ(::read(fd, &v, 8), 8);
  ASSERT_TRUE(SendSeq(pub, 0, 100));
  p.revents = 0;
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  ASSERT_EQ(::read(fd, &v, 8), 8);
  ExpectSeq(sub, 0, 100);
}

INSTANTIATE_TEST_SUITE_P(Policies, PolicyTest,
                         ::testing::Values(TopicPolicy::kBlock, TopicPolicy::kOverwrite),
                         [](const auto& info) {
                           return info.param == TopicPolicy::kBlock ? "Block" : "Overwrite";
                         });

TEST(TopicOverwrite, LappedSubscriberLearnsTheExactLossAndContinues) {
  auto topic =
      Must(Topic::Create(UniqueShmName("topic-lap"), Options(TopicPolicy::kOverwrite, 4096)));
  auto pub = Must(topic.Publisher());
  auto sub = Must(topic.Subscriber());
  // 64-byte messages: 80-byte records, 4096 / 80 = 51 fit; publish 200 without reading.
  for (uint64_t seq = 0; seq < 200; ++seq) {
    auto buf = Must(pub.try_loan(64));
    std::memset(buf.data(), static_cast<int>(seq), 64);
    ASSERT_EQ(*pub.publish(), seq);
  }
  auto r = sub.try_receive();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), RingErrc::kOverrun);
  const uint64_t lost = sub.last_loss();
  EXPECT_GT(lost, 100u);
  EXPECT_EQ(sub.next_sequence(), lost);
  // Everything from the oldest intact message on arrives, intact, in order.
  uint64_t next = lost;
  for (;;) {
    auto m = sub.try_receive();
    if (!m) {
      EXPECT_EQ(m.error(), RingErrc::kWouldBlock);
      break;
    }
    EXPECT_EQ(m->seq, next);
    for (auto b : m->data) ASSERT_EQ(static_cast<uint8_t>(b), static_cast<uint8_t>(next));
    ASSERT_TRUE(sub.release());
    ++next;
  }
  EXPECT_EQ(next, 200u);
  EXPECT_EQ(sub.total_lost(), lost);
}

TEST(TopicOverwrite, MessageOverwrittenWhileHeldIsReportedAtRelease) {
  auto topic =
      Must(Topic::Create(UniqueShmName("topic-torn"), Options(TopicPolicy::kOverwrite, 4096)));
  auto pub = Must(topic.Publisher());
  auto sub = Must(topic.Subscriber());
  auto first = pub.send(std::as_bytes(std::span("first")));
  ASSERT_TRUE(first) << first.error().message();
  auto held = Must(sub.try_receive());
  EXPECT_EQ(held.seq, 0u);
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(pub.send(std::as_bytes(std::span("overwriting it"))));
  auto rel = sub.release();
  ASSERT_FALSE(rel);
  EXPECT_EQ(rel.error(), RingErrc::kOverrun);
  EXPECT_EQ(sub.next_sequence(), sub.last_loss());  // lost 0 .. last_loss - 1, held one too
  EXPECT_GE(sub.last_loss(), 1u);
  auto m = Must(sub.try_receive());
  EXPECT_EQ(m.seq, sub.last_loss());
}

TEST(TopicOverwrite, PublisherNeverWaitsForSubscribers) {
  auto topic =
      Must(Topic::Create(UniqueShmName("topic-nowait"), Options(TopicPolicy::kOverwrite, 4096)));
  auto pub = Must(topic.Publisher());
  auto sub = Must(topic.Subscriber());
  for (int i = 0; i < 10000; ++i) {
    ASSERT_TRUE(pub.try_loan(100)) << i;
    ASSERT_TRUE(pub.publish());
  }
}

TEST(TopicBlock, PublisherWaitsForTheSlowestSubscriberOnly) {
  auto topic = Must(Topic::Create(UniqueShmName("topic-bp"), Options(TopicPolicy::kBlock, 4096)));
  auto pub = Must(topic.Publisher());
  auto fast = Must(topic.Subscriber());
  auto slow = Must(topic.Subscriber());
  uint64_t sent = 0;
  for (;;) {
    auto buf = pub.try_loan(64);
    if (!buf) {
      EXPECT_EQ(buf.error(), RingErrc::kWouldBlock);
      break;
    }
    ASSERT_TRUE(pub.publish());
    ASSERT_TRUE(fast.try_receive());
    ASSERT_TRUE(fast.release());
    ++sent;
    ASSERT_LT(sent, 1000u);
  }
  EXPECT_GT(sent, 40u);
  EXPECT_EQ(pub.loan(64, WaitOptions::WithTimeout(std::chrono::milliseconds(30))).error(),
            RingErrc::kTimedOut);
  // The slow one catches up: room again.
  for (uint64_t i = 0; i < sent; ++i) {
    ASSERT_TRUE(slow.try_receive());
    ASSERT_TRUE(slow.release());
  }
  ASSERT_TRUE(pub.try_loan(64));
  ASSERT_TRUE(pub.publish());
  ASSERT_TRUE(fast.try_receive());
  ASSERT_TRUE(fast.release());
  for (;;) {
    if (!pub.try_loan(64)) break;
    ASSERT_TRUE(pub.publish());
    ASSERT_TRUE(fast.try_receive());
    ASSERT_TRUE(fast.release());
  }
  // The slow one leaves: nothing holds the publisher back any more.
  { TopicSubscriber gone = std::move(slow); }
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(pub.try_loan(64)) << i;
    ASSERT_TRUE(pub.publish());
    while (fast.try_receive()) ASSERT_TRUE(fast.release());
  }
}

TEST(TopicBlock, SuccessorPublisherStillWaitsForSubscribersBehindTheAnnouncement) {
  auto topic = Must(Topic::Create(UniqueShmName("topic-succ"), Options(TopicPolicy::kBlock, 4096)));
  auto slow = Must(topic.Subscriber());
  uint64_t seq = 0;
  {
    auto pub = Must(topic.Publisher());
    // Fill the log: the publisher's slow path announces where joiners start (the published
    // end), which lies beyond what `slow` still has to read.
    for (;; ++seq) {
      auto buf = pub.try_loan(MessageSize(kSeed, seq, 200));
      if (!buf) {
        ASSERT_EQ(buf.error(), RingErrc::kWouldBlock);
        break;
      }
      FillMessage(kSeed, seq, *buf);
      ASSERT_TRUE(pub.publish());
    }
  }
  // A successor must not take the announcement for the reclaim horizon.
  auto next = Must(topic.Publisher());
  EXPECT_EQ(next.try_loan(MessageSize(kSeed, seq, 200)).error(), RingErrc::kWouldBlock);
  for (uint64_t s = 0; s < seq; ++s) ExpectSeq(slow, s, 200);
  ASSERT_TRUE(SendSeq(next, seq, 200));
  ExpectSeq(slow, seq, 200);
}

struct Quote {
  double bid;
  double ask;
  uint64_t ts;
};
struct Other {
  double x;
  double y;
  uint64_t z;
};

TEST(TopicTyped, SendAndReceiveTypedMessages) {
  const std::string name = UniqueShmName("topic-typed");
  auto topic = Must(Topic::Create<Quote>(name, Options(TopicPolicy::kBlock)));
  auto attached = Must(Topic::Attach<Quote>(name));
  auto pub = Must(topic.Publisher());
  auto sub = Must(attached.Subscriber());
  ASSERT_TRUE(pub.send(Quote{1.5, 2.5, 7}));
  auto q = Must(sub.receive<Quote>());
  EXPECT_EQ(q->bid, 1.5);
  EXPECT_EQ(q->ts, 7u);
  ASSERT_TRUE(sub.release());
  auto* slot = Must(pub.loan<Quote>());
  *slot = Quote{3, 4, 8};
  ASSERT_TRUE(pub.publish());
  EXPECT_EQ(Must(sub.receive<Quote>())->ask, 4.0);
}

TEST(TopicTyped, MismatchedTypeIsRefused) {
  const std::string name = UniqueShmName("topic-mismatch");
  auto topic = Must(Topic::Create<Quote>(name, Options(TopicPolicy::kBlock)));
  EXPECT_EQ(Topic::Attach<Other>(name).error(), RingErrc::kTypeMismatch);  // same size, other name
  EXPECT_EQ(Topic::Attach<uint64_t>(name).error(), RingErrc::kTypeMismatch);
  auto pub = Must(topic.Publisher());
  EXPECT_EQ(pub.loan<Other>().error(), RingErrc::kTypeMismatch);
  EXPECT_EQ(pub.try_loan(10).error(), RingErrc::kTypeMismatch);  // raw bytes of another size
  auto sub = Must(topic.Subscriber());
  ASSERT_TRUE(pub.send(Quote{}));
  EXPECT_EQ(sub.receive<Other>().error(), RingErrc::kTypeMismatch);
  // Untyped topics refuse typed attach.
  const std::string raw = UniqueShmName("topic-raw");
  auto untyped = Must(Topic::Create(raw, Options(TopicPolicy::kBlock)));
  EXPECT_EQ(Topic::Attach<Quote>(raw).error(), RingErrc::kTypeMismatch);
}

TEST(TopicOptionsTest, OutOfRangeOptionsAreRejected) {
  const std::string name = UniqueShmName("topic-opt");
  TopicOptions o;
  o.capacity = 5000;  // not a power of two
  EXPECT_EQ(Topic::Create(name, o).error(), RingErrc::kInvalidArgument);
  o.capacity = 4096;
  o.max_message_size = 4096;  // > capacity / 4 - 16
  EXPECT_EQ(Topic::Create(name, o).error(), RingErrc::kInvalidArgument);
  o.max_message_size = 0;
  o.max_subscribers = 0;
  EXPECT_EQ(Topic::Create(name, o).error(), RingErrc::kInvalidArgument);
  o.max_subscribers = 256;
  o.policy = static_cast<TopicPolicy>(7);
  EXPECT_EQ(Topic::Create(name, o).error(), RingErrc::kInvalidArgument);
  EXPECT_FALSE(testing::ShmExists(name));
}

TEST(TopicSlots, MaxSubscribersIsEnforcedAndSlotsAreReused) {
  TopicOptions o = Options(TopicPolicy::kBlock);
  o.max_subscribers = 256;
  auto topic = Must(Topic::Create(UniqueShmName("topic-slots"), o));
  std::vector<TopicSubscriber> subs;
  for (int i = 0; i < 256; ++i) subs.push_back(Must(topic.Subscriber()));
  EXPECT_EQ(topic.Subscriber().error(), RingErrc::kRoleTaken);
  subs.erase(subs.begin() + 17);
  auto again = Must(topic.Subscriber());
  EXPECT_EQ(again.slot(), 17u);
  auto pub = Must(topic.Publisher());
  ASSERT_TRUE(SendSeq(pub, 0, 100));
  for (auto& s : subs) ExpectSeq(s, 0, 100);
}

TEST(TopicHeader, CorruptOrForeignSegmentsAreErrors) {
  const std::string name = UniqueShmName("topic-corrupt");
  auto topic = Must(Topic::Create(name, Options(TopicPolicy::kBlock)));
  auto* h = reinterpret_cast<SegmentHeader*>(topic.segment().data());
  // Corrupt one geometry word: the checksum no longer matches.
  h->geometry[0] ^= 1;
  EXPECT_EQ(Topic::Attach(name).error(), RingErrc::kBadChecksum);
  // Consistent checksum over an inconsistent geometry.
  h->geometry[0] = 3000;
  h->checksum = HeaderChecksum(h);
  EXPECT_EQ(Topic::Attach(name).error(), RingErrc::kBadGeometry);
  h->geometry[0] = 1 << 16;
  h->geometry[2] = 256 | (uint64_t{9} << 32);  // unknown policy
  h->checksum = HeaderChecksum(h);
  EXPECT_EQ(Topic::Attach(name).error(), RingErrc::kBadGeometry);
  h->geometry[2] = 256 | (uint64_t{1} << 32);
  h->checksum = HeaderChecksum(h);
  ASSERT_TRUE(Topic::Attach(name));
  h->version = kLayoutVersion + 1;
  EXPECT_EQ(Topic::Attach(name).error(), RingErrc::kBadVersion);
  h->version = kLayoutVersion;
  h->kind = static_cast<uint32_t>(SegmentKind::kSpscRing);
  h->checksum = HeaderChecksum(h);
  EXPECT_EQ(Topic::Attach(name).error(), RingErrc::kWrongKind);
}

TEST(TopicHeader, CorruptPositionsAreErrorsNotCrashes) {
  const std::string name = UniqueShmName("topic-badpos");
  auto topic = Must(Topic::Create(name, Options(TopicPolicy::kOverwrite, 4096)));
  auto* ctl = reinterpret_cast<TopicControl*>(topic.segment().data() + sizeof(SegmentHeader));
  ctl->tail_pos.store(12345);  // misaligned
  EXPECT_EQ(Must(topic.Publisher()).try_loan(8).error(), RingErrc::kCorrupt);
  ctl->tail_pos.store(0);
  ctl->head_pos.store(8);  // misaligned head
  auto sub = topic.Subscriber();
  ASSERT_FALSE(sub);
  EXPECT_EQ(sub.error(), RingErrc::kCorrupt);
}

}  // namespace
}  // namespace shmlink
