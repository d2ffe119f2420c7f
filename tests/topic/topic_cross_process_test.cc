// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Topics across real processes (fork, kill -9): subscribers joining and leaving
// mid-stream, overwrite lapping without torn reads and with exact loss accounting, a
// kill -9'd subscriber under the block policy, and a kill -9'd publisher with a successor.
// No timing is asserted: bounds are generous limits on waits, never measurements.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <vector>

#include "ringbuf/topic.h"
#include "tests/spsc/spsc_test_util.h"
#include "tests/test_util.h"

namespace shmlink {
namespace {

using testing::CheckMessage;
using testing::DeleteShared;
using testing::FillMessage;
using testing::ForkChild;
using testing::kSanitized;
using testing::MessageSize;
using testing::NewShared;
using testing::UniqueShmName;
using testing::WaitChildFor;

constexpr uint64_t kSeed = 0x5eed;
constexpr size_t kMax = 1000;
constexpr auto kLimit = std::chrono::seconds(60);
const WaitOptions kWait = WaitOptions::WithTimeout(std::chrono::seconds(20));

Topic MustTopic(Expected<Topic> t) {
  if (!t) {
    ADD_FAILURE() << t.error().message();
    std::abort();
  }
  return std::move(*t);
}

TopicOptions Options(TopicPolicy policy, uint64_t capacity) {
  TopicOptions o;
  o.capacity = capacity;
  o.max_message_size = kMax;
  o.policy = policy;
  return o;
}

Expected<uint64_t> SendSeq(TopicPublisher& pub, uint64_t seq) {
  auto buf = pub.loan(MessageSize(kSeed, seq, kMax), kWait);
  if (!buf) return MakeUnexpected(buf.error());
  FillMessage(kSeed, seq, *buf);
  return pub.publish();
}

// Reads `count` messages (or to the end of stream if count == 0) and checks each is intact
// and the sequence has no gap. Returns 0 or an error code (exit status of a child).
int ReadContiguous(TopicSubscriber& sub, uint64_t count, uint64_t* next_out = nullptr) {
  uint64_t next = sub.next_sequence();
  for (uint64_t i = 0; count == 0 || i < count; ++i) {
    auto m = sub.receive(kWait);
    if (!m) {
      if (m.error() == RingErrc::kClosed && count == 0) return 0;
      std::fprintf(stderr, "receive of %llu: %s\n", static_cast<unsigned long long>(next),
                   m.error().message().c_str());
      return 20;
    }
    if (m->seq != next) return 21;
    if (CheckMessage(kSeed, next, kMax, m->data) != 0) return 22;
    if (!sub.release()) return 23;
    ++next;
  }
  if (next_out != nullptr) *next_out = next;
  return 0;
}

TEST(TopicCrossProcess, SubscribersJoinAndLeaveMidStream) {
  const std::string name = UniqueShmName("topic-xp");
  auto topic = MustTopic(Topic::Create(name, Options(TopicPolicy::kBlock, 1 << 15)));
  const uint64_t total = kSanitized ? 3000 : 20000;
  testing::Signal ready;
  // Present from the start: reads everything.
  pid_t whole = ForkChild([&] {
    auto t = Topic::Attach(name);
    if (!t) return 10;
    auto sub = t->Subscriber();
    if (!sub) return 11;
    ready.Notify();
    uint64_t next = 0;
    int rc = ReadContiguous(*sub, 0, &next);
    return rc;
  });
  ASSERT_TRUE(ready.Wait());
  // Joins mid-stream, leaves, joins again (three times), then reads to the end. The
  // publisher keeps going until the hops are done, so they all happen mid-stream.
  auto* hops = NewShared<std::atomic<int>>();
  pid_t hopper = ForkChild([&] {
    auto t = Topic::Attach(name);
    if (!t) return 10;
    for (int round = 0; round < 3; ++round) {
      auto sub = t->Subscriber();
      if (!sub) return 11;
      if (int rc = ReadContiguous(*sub, 500); rc != 0) return rc;
      hops->fetch_add(1);
    }
    auto sub = t->Subscriber();
    if (!sub) return 11;
    return ReadContiguous(*sub, 0);
  });
  auto pub = topic.Publisher();
  ASSERT_TRUE(pub);
  for (uint64_t seq = 0; seq < total || hops->load() < 3; ++seq) {
    ASSERT_EQ(*SendSeq(*pub, seq), seq);
  }
  pub->close();
  EXPECT_EQ(WaitChildFor(whole, kLimit), 0);
  EXPECT_EQ(WaitChildFor(hopper, kLimit), 0);
  DeleteShared(hops);
}

TEST(TopicCrossProcess, OverwriteLappingNeverYieldsTornDataAndCountsEveryLoss) {
  const std::string name = UniqueShmName("topic-xo");
  auto topic = MustTopic(Topic::Create(name, Options(TopicPolicy::kOverwrite, 8192)));
  const uint64_t total = kSanitized ? 20000 : 200000;
  testing::Signal ready[2];
  struct Lost {
    std::atomic<uint64_t> n[2];
  };
  auto* lost = NewShared<Lost>();
  std::vector<pid_t> kids;
  for (int k = 0; k < 2; ++k) {
    kids.push_back(ForkChild([&, k] {
      auto t = Topic::Attach(name);
      if (!t) return 10;
      auto sub = t->Subscriber();
      if (!sub) return 11;
      ready[k].Notify();
      std::vector<std::byte> copy(kMax);
      uint64_t received = 0;
      uint64_t last = 0;
      bool any = false;
      for (uint64_t n = 0;; ++n) {
        auto m = sub->receive(kWait);
        if (!m) {
          if (m.error() == RingErrc::kOverrun) continue;
          if (m.error() != RingErrc::kClosed) return 20;
          break;
        }
        if (any && m->seq <= last) return 21;  // strictly increasing
        const size_t len = m->data.size();
        if (len > kMax) return 22;
        std::memcpy(copy.data(), m->data.data(), len);
        const uint64_t seq = m->seq;
        if ((n & 63) == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
        auto rel = sub->release();
        if (!rel) {
          if (rel.error() != RingErrc::kOverrun) return 23;
          continue;  // the copy may be torn: discarded, counted in last_loss()
        }
        if (CheckMessage(kSeed, seq, kMax, std::span(copy.data(), len)) != 0) return 24;
        any = true;
        last = seq;
        ++received;
      }
      lost->n[k].store(sub->total_lost());
      // Every message was either received intact or counted as lost.
      return received + sub->total_lost() == total ? 0 : 25;
    }));
  }
  for (auto& r : ready) ASSERT_TRUE(r.Wait());
  auto pub = topic.Publisher();
  ASSERT_TRUE(pub);
  for (uint64_t seq = 0; seq < total; ++seq) ASSERT_EQ(*SendSeq(*pub, seq), seq);
  pub->close();
  for (pid_t kid : kids) EXPECT_EQ(WaitChildFor(kid, kLimit), 0);
  // Informational (timing-dependent): how much lapping this run exercised.
  std::printf("lost by subscriber: %llu, %llu of %llu\n",
              static_cast<unsigned long long>(lost->n[0].load()),
              static_cast<unsigned long long>(lost->n[1].load()),
              static_cast<unsigned long long>(total));
  DeleteShared(lost);
}

TEST(TopicCrossProcess, KilledSubscriberStopsBlockingThePublisher) {
  const std::string name = UniqueShmName("topic-xk");
  auto topic = MustTopic(Topic::Create(name, Options(TopicPolicy::kBlock, 1 << 14)));
  auto live = topic.Subscriber();
  ASSERT_TRUE(live);
  testing::Signal joined;
  pid_t stuck = ForkChild([&] {
    auto t = Topic::Attach(name);
    if (!t) return 10;
    auto sub = t->Subscriber();
    if (!sub) return 11;
    joined.Notify();
    auto m = sub->receive(kWait);  // holds the first message and never releases it
    ::pause();
    return 0;
  });
  ASSERT_TRUE(joined.Wait());
  auto pub = topic.Publisher();
  ASSERT_TRUE(pub);
  uint64_t seq = 0;
  for (;; ++seq) {
    auto buf = pub->try_loan(MessageSize(kSeed, seq, kMax));
    if (!buf) {
      ASSERT_EQ(buf.error(), RingErrc::kWouldBlock);
      break;
    }
    FillMessage(kSeed, seq, *buf);
    ASSERT_TRUE(pub->publish());
    ASSERT_EQ(ReadContiguous(*live, 1), 0);
  }
  ::kill(stuck, SIGKILL);
  // Liveness detection frees the dead subscriber's slot: the publisher goes on.
  for (uint64_t end = seq + 200; seq < end; ++seq) {
    ASSERT_EQ(*SendSeq(*pub, seq), seq);
    ASSERT_EQ(ReadContiguous(*live, 1), 0);
  }
  EXPECT_EQ(WaitChildFor(stuck, kLimit), 128 + SIGKILL);
}

TEST(TopicCrossProcess, KilledPublisherIsDrainedThenSucceeded) {
  const std::string name = UniqueShmName("topic-xpk");
  auto topic = MustTopic(Topic::Create(name, Options(TopicPolicy::kBlock, 1 << 14)));
  auto sub = topic.Subscriber();
  ASSERT_TRUE(sub);
  std::mt19937_64 rng(std::random_device{}());
  for (int trial = 0; trial < 3; ++trial) {
    const uint64_t first = sub->next_sequence();
    // A publisher that publishes as fast as it can until it is killed at a random moment.
    testing::Signal claimed;
    pid_t publisher = ForkChild([&] {
      auto t = Topic::Attach(name);
      if (!t) return 10;
      auto pub = t->Publisher();
      if (!pub || pub->next_sequence() != first) return 11;
      claimed.Notify();
      for (uint64_t seq = first;; ++seq) {
        if (!SendSeq(*pub, seq)) return 12;
      }
    });
    // Until the successor holds the role, the dead predecessor is what a wait would report.
    ASSERT_TRUE(claimed.Wait());
    const uint64_t cut = 50 + rng() % 3000;
    uint64_t next = first;
    ASSERT_EQ(ReadContiguous(*sub, cut, &next), 0) << "publisher exit: " << [&] {
      ::kill(publisher, SIGKILL);
      return WaitChildFor(publisher, kLimit);
    }();
    ::kill(publisher, SIGKILL);
    EXPECT_EQ(WaitChildFor(publisher, kLimit), 128 + SIGKILL);
    // Drain what it published, then learn it died.
    for (;;) {
      auto m = sub->receive(kWait);
      if (!m) {
        ASSERT_EQ(m.error(), RingErrc::kPeerDead);
        break;
      }
      ASSERT_EQ(m->seq, next);
      ASSERT_EQ(CheckMessage(kSeed, next, kMax, m->data), 0);
      ASSERT_TRUE(sub->release());
      ++next;
    }
    ASSERT_EQ(sub->next_sequence(), next);
  }
  // A successor (this process) continues the stream after everything delivered.
  auto pub = topic.Publisher();
  ASSERT_TRUE(pub);
  const uint64_t next = sub->next_sequence();
  EXPECT_EQ(pub->next_sequence(), next);
  ASSERT_TRUE(SendSeq(*pub, next));
  ASSERT_EQ(ReadContiguous(*sub, 1), 0);
}

}  // namespace
}  // namespace shmlink
