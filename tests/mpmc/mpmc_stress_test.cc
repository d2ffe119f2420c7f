// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// 4 producer processes x 4 consumer processes, 10 M messages in total (fewer under
// sanitizers): every message is delivered exactly once (a shared bitmap of
// producer/sequence numbers), intact (checksums), and each consumer sees every producer's
// messages in order. Copying and zero-copy forms are mixed.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "tests/mpmc/mpmc_test_util.h"
#include "tests/test_util.h"

#include <shmlink/mpmc_queue.h>

namespace shmlink {
namespace {

using namespace std::chrono_literals;
using testing::DecodeMessage;
using testing::EncodeMessage;
using testing::ForkChild;
using testing::UniqueShmName;
using testing::WaitChildFor;

constexpr uint32_t kProducers = 4;
constexpr uint32_t kConsumers = 4;
constexpr uint64_t kTotal = testing::kSanitized ? 200'000 : 10'000'000;
constexpr uint64_t kPerProducer = kTotal / kProducers;

struct Board {
  std::atomic<uint64_t> consumed{0};
  std::atomic<uint64_t> duplicates{0};
  std::atomic<uint64_t> corrupt{0};
  std::atomic<uint64_t> out_of_order{0};
  std::atomic<uint64_t> redelivered{0};
  std::atomic<uint64_t> bits[kTotal / 64 + 1];
};

int RunProducer(const std::string& name, uint32_t id) {
  auto q = MpmcQueue::Attach(name);
  if (!q) return 2;
  auto tx = q->Producer();
  if (!tx) return 3;
  std::byte buf[testing::kMaxMsg];
  for (uint64_t seq = 0; seq < kPerProducer; ++seq) {
    if (seq % 2 == 0) {
      const size_t n = EncodeMessage(id, seq, testing::kMsgSpread, buf);
      if (!tx->push({buf, n}, WaitOptions::WithTimeout(20s))) return 4;
    } else {
      auto span = tx->claim(testing::kMaxMsg, WaitOptions::WithTimeout(20s));
      if (!span) return 5;
      const size_t n = EncodeMessage(id, seq, testing::kMsgSpread, span->data());
      if (!tx->publish(n)) return 6;
    }
  }
  return 0;
}

int RunConsumer(const std::string& name, Board* board) {
  auto q = MpmcQueue::Attach(name);
  if (!q) return 2;
  auto rx = q->Consumer();
  if (!rx) return 3;
  std::vector<int64_t> last(kProducers, -1);
  std::byte buf[testing::kMaxMsg];
  uint64_t local = 0;
  const auto deadline = std::chrono::steady_clock::now() + 50s;
  auto take = [&](std::span<const std::byte> m, bool redelivered) {
    auto d = DecodeMessage(m);
    if (!d.ok || d.producer >= kProducers || d.seq >= kPerProducer) {
      board->corrupt.fetch_add(1);
      return;
    }
    if (redelivered) board->redelivered.fetch_add(1);
    if (static_cast<int64_t>(d.seq) <= last[d.producer]) board->out_of_order.fetch_add(1);
    last[d.producer] = static_cast<int64_t>(d.seq);
    const uint64_t bit = d.producer * kPerProducer + d.seq;
    const uint64_t mask = uint64_t{1} << (bit % 64);
    if (board->bits[bit / 64].fetch_or(mask) & mask) board->duplicates.fetch_add(1);
  };
  for (uint64_t i = 0;; ++i) {
    bool got = false;
    if (i % 2 == 0) {
      auto r = rx->pop(buf, WaitOptions::WithTimeout(20ms));
      if (r) {
        take({buf, r->size}, r->redelivered);
        got = true;
      } else if (r.error() != RingErrc::kTimedOut) {
        return 4;
      }
    } else {
      auto m = rx->claim(WaitOptions::WithTimeout(20ms));
      if (m) {
        take(m->data, m->redelivered);
        if (!rx->release()) return 5;
        got = true;
      } else if (m.error() != RingErrc::kTimedOut) {
        return 6;
      }
    }
    if (got && ++local % 1024 != 0) continue;
    board->consumed.fetch_add(local);
    local = 0;
    if (!got) {
      if (board->consumed.load() >= kTotal) return 0;
      if (std::chrono::steady_clock::now() > deadline) return 7;
    }
  }
}

TEST(MpmcStressTest, FourByFourProcessesDeliverEveryMessageExactlyOnceInOrder) {
  const std::string name = UniqueShmName("mpmc-stress");
  auto q = MpmcQueue::Create(name, 1024, testing::kMaxMsg);
  ASSERT_TRUE(q) << q.error().message();
  Board* board = testing::NewShared<Board>();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<pid_t> kids;
  for (uint32_t c = 0; c < kConsumers; ++c) {
    kids.push_back(ForkChild([&] { return RunConsumer(name, board); }));
  }
  for (uint32_t p = 0; p < kProducers; ++p) {
    kids.push_back(ForkChild([&, p] { return RunProducer(name, p); }));
  }
  for (pid_t k : kids) EXPECT_EQ(WaitChildFor(k, 55000ms), 0);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%llu messages in %.2f s (%.2f M msgs/s)\n", static_cast<unsigned long long>(kTotal),
              secs, kTotal / secs / 1e6);
  EXPECT_EQ(board->consumed.load(), kTotal);
  EXPECT_EQ(board->duplicates.load(), 0u);
  EXPECT_EQ(board->corrupt.load(), 0u);
  EXPECT_EQ(board->out_of_order.load(), 0u);
  EXPECT_EQ(board->redelivered.load(), 0u);
  uint64_t set = 0;
  for (uint64_t i = 0; i < kTotal / 64 + 1; ++i) set += __builtin_popcountll(board->bits[i].load());
  EXPECT_EQ(set, kTotal);
  MpmcStats st = q->stats();
  EXPECT_EQ(st.pushes, kTotal);
  EXPECT_EQ(st.pops, kTotal);
  EXPECT_EQ(st.size, 0u);
  EXPECT_EQ(st.abandoned, 0u);
  EXPECT_EQ(st.redelivered, 0u);
  EXPECT_EQ(st.producers + st.consumers, 0u);  // every handle deregistered
  testing::DeleteShared(board);
}

}  // namespace
}  // namespace shmlink
