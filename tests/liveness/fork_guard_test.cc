// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Handles are bound to the process that claimed them. A forked child that destroys an
// inherited handle must not release the parent's role, claim or registry entry (it used
// to: a third process then became producer and a message was lost). Real processes,
// real shm: the child destroys its copy and exits 0; then another process must still find
// the role taken, and the parent's stream must arrive complete.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>

#include "tests/test_util.h"

#include <shmlink/mpmc_queue.h>
#include <shmlink/spsc_ring.h>
#include <shmlink/topic.h>

namespace shmlink {
namespace {

using namespace std::chrono_literals;
using testing::Bytes;
using testing::ForkChild;
using testing::Str;
using testing::UniqueShmName;
using testing::WaitChildFor;

// Exit code of a child that asks `claim` for a role: 0 if the role is taken (as it should
// be while the parent holds it), 1 if it got the role, 2 on any other error.
template <typename ClaimFn>
int ChildClaimResult(ClaimFn claim) {
  const pid_t pid = ForkChild([&]() -> int {
    auto r = claim();
    if (r) return 1;
    return r.error() == RingErrc::kRoleTaken ? 0 : 2;
  });
  return WaitChildFor(pid, 10s);
}

constexpr int kMessages = 100;

TEST(ForkGuard, ChildDestroyingInheritedSpscProducerKeepsParentsRole) {
  auto ring = SpscRing::Create(UniqueShmName("fg-spsc-tx"), 1 << 16);
  ASSERT_TRUE(ring) << ring.error().message();
  std::optional<SpscProducer> tx;
  {
    auto p = ring->Producer();
    ASSERT_TRUE(p);
    tx.emplace(std::move(*p));
  }
  ASSERT_TRUE(tx->try_send(Bytes("m0")));
  const pid_t child = ForkChild([&]() -> int {
    tx.reset();  // the inherited copy
    return 0;
  });
  ASSERT_EQ(WaitChildFor(child, 10s), 0);
  EXPECT_EQ(ChildClaimResult([&] { return ring->Producer(); }), 0)
      << "another process became producer while the parent holds the role";
  for (int i = 1; i < kMessages; ++i) {
    ASSERT_TRUE(tx->try_send(Bytes("m" + std::to_string(i))));
  }
  auto rx = ring->Consumer();
  ASSERT_TRUE(rx);
  for (int i = 0; i < kMessages; ++i) {
    auto m = rx->peek(WaitOptions::WithTimeout(5s));
    ASSERT_TRUE(m) << i << ": " << m.error().message();
    EXPECT_EQ(Str(*m), "m" + std::to_string(i));
    ASSERT_TRUE(rx->advance());
  }
}

// The child's copy of a consumer that has fd()'s notifier running: destroying it must
// neither release the role nor wait for a thread that does not exist in the child.
TEST(ForkGuard, ChildDestroyingInheritedSpscConsumerKeepsParentsRole) {
  auto ring = SpscRing::Create(UniqueShmName("fg-spsc-rx"), 1 << 16);
  ASSERT_TRUE(ring) << ring.error().message();
  auto tx = ring->Producer();
  ASSERT_TRUE(tx);
  std::optional<SpscConsumer> rx;
  {
    auto c = ring->Consumer();
    ASSERT_TRUE(c);
    rx.emplace(std::move(*c));
  }
  ASSERT_TRUE(rx->fd());
  ASSERT_TRUE(tx->try_send(Bytes("m0")));
  ASSERT_TRUE(rx->peek(WaitOptions::WithTimeout(5s)));  // peeked, not advanced
  const pid_t child = ForkChild([&]() -> int {
    rx.reset();  // the inherited copy
    return 0;
  });
  ASSERT_EQ(WaitChildFor(child, 10s), 0) << "the child could not destroy its copy";
  EXPECT_EQ(ChildClaimResult([&] { return ring->Consumer(); }), 0)
      << "another process became consumer while the parent holds the role";
  for (int i = 1; i < kMessages; ++i) {
    ASSERT_TRUE(tx->try_send(Bytes("m" + std::to_string(i))));
  }
  for (int i = 0; i < kMessages; ++i) {
    auto m = rx->peek(WaitOptions::WithTimeout(5s));
    ASSERT_TRUE(m) << i << ": " << m.error().message();
    EXPECT_EQ(Str(*m), "m" + std::to_string(i));
    ASSERT_TRUE(rx->advance());
  }
  rx->release();
}

TEST(ForkGuard, ChildDestroyingInheritedMpmcHandlesKeepsParentsClaims) {
  auto q = MpmcQueue::Create(UniqueShmName("fg-mpmc"), 8, 64);
  ASSERT_TRUE(q) << q.error().message();
  std::optional<MpmcProducer> tx;
  std::optional<MpmcConsumer> rx;
  {
    auto p = q->Producer();
    auto c = q->Consumer();
    ASSERT_TRUE(p && c);
    tx.emplace(std::move(*p));
    rx.emplace(std::move(*c));
  }
  ASSERT_TRUE(tx->try_push(Bytes("first")));
  auto held = rx->try_claim();  // the parent holds "first"
  ASSERT_TRUE(held);
  auto span = tx->try_claim(6);  // and has "second" claimed, not yet published
  ASSERT_TRUE(span);
  std::memcpy(span->data(), "second", 6);
  const pid_t child = ForkChild([&]() -> int {
    rx.reset();  // the inherited copies
    tx.reset();
    return 0;
  });
  ASSERT_EQ(WaitChildFor(child, 10s), 0);
  const MpmcStats st = q->stats();
  EXPECT_EQ(st.producers, 1u) << "the parent's producer entry was freed by the child";
  EXPECT_EQ(st.consumers, 1u) << "the parent's consumer entry was freed by the child";
  EXPECT_EQ(st.abandoned, 0u) << "the parent's claim was aborted by the child";
  EXPECT_EQ(Str(held->data), "first");
  EXPECT_TRUE(tx->publish());
  EXPECT_TRUE(rx->release());
  auto m = rx->claim(WaitOptions::WithTimeout(5s));
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(Str(m->data), "second");
  EXPECT_TRUE(rx->release());
  EXPECT_EQ(q->stats().pops, 2u);
}

// A topic's publisher and a subscriber (with fd()'s notifier running) inherited by a child
// that destroys them: the parent stays publisher, its subscriber keeps its slot, so a
// block-policy publisher still waits for it when the log is full instead of overwriting
// what it has not read.
TEST(ForkGuard, ChildDestroyingInheritedTopicHandlesKeepsParentsRoles) {
  TopicOptions opts;
  opts.capacity = 4096;
  opts.policy = TopicPolicy::kBlock;
  auto topic = Topic::Create<uint64_t>(UniqueShmName("fg-topic"), opts);
  ASSERT_TRUE(topic) << topic.error().message();
  std::optional<TopicPublisher> pub;
  std::optional<TopicSubscriber> sub;
  {
    auto p = topic->Publisher();
    auto s = topic->Subscriber();
    ASSERT_TRUE(p && s);
    pub.emplace(std::move(*p));
    sub.emplace(std::move(*s));
  }
  ASSERT_TRUE(sub->fd());
  const pid_t child = ForkChild([&]() -> int {
    sub.reset();  // the inherited copies
    pub.reset();
    return 0;
  });
  ASSERT_EQ(WaitChildFor(child, 10s), 0) << "the child could not destroy its copies";
  EXPECT_EQ(ChildClaimResult([&] { return topic->Publisher(); }), 0)
      << "another process became publisher while the parent holds the role";
  EXPECT_EQ(topic->subscriber_count(), 1u) << "the child freed the parent's subscriber slot";
  // Fill the log: the unread subscriber must stop the publisher (a freed slot would not).
  uint64_t sent = 0;
  Expected<uint64_t> r = 0;
  while (sent < 1000 && (r = pub->send(sent, WaitOptions::WithTimeout(100ms)))) ++sent;
  ASSERT_FALSE(r) << "the publisher never waited for the parent's subscriber";
  EXPECT_EQ(r.error(), RingErrc::kTimedOut);
  for (uint64_t i = 0; i < sent; ++i) {
    auto v = sub->receive<uint64_t>(WaitOptions::WithTimeout(5s));
    ASSERT_TRUE(v) << i << ": " << v.error().message();
    EXPECT_EQ(**v, i);
    ASSERT_TRUE(sub->release());
  }
}

}  // namespace
}  // namespace shmlink
