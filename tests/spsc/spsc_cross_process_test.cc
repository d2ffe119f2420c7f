// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Producer and consumer in separate processes (fork, and a separately exec'd reader that
// attaches by name) and in separate threads (for ThreadSanitizer): long random streams
// verified byte by byte, wake-ups, timeouts, idle CPU, end-of-stream and peer death.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/spsc/spsc_test_util.h"
#include "tests/test_util.h"

#include <shmlink/spsc_ring.h>

namespace shmlink {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::kSanitized;
using testing::TestRing;
using testing::WaitChildFor;

constexpr auto kHang = std::chrono::milliseconds(120'000);  // hang detection only

// Writes messages [0, count) of stream `seed` in place, committing in random batches.
void ProduceStream(SpscProducer& tx, uint64_t seed, uint64_t count, const WaitOptions& opts) {
  const size_t max = tx.max_message_size();
  std::mt19937 rng(static_cast<uint32_t>(seed));
  uint32_t batch_left = 0;
  for (uint64_t seq = 0; seq < count; ++seq) {
    auto buf = tx.reserve(testing::MessageSize(seed, seq, max), opts);
    ASSERT_TRUE(buf) << seq << ": " << buf.error().message();
    testing::FillMessage(seed, seq, *buf);
    if (batch_left == 0) batch_left = rng() % 16 + 1;
    if (--batch_left == 0) tx.commit();
  }
  tx.close();
}

// Reads and verifies messages [0, count) then expects kClosed. Returns 0 or an error code.
int ConsumeStream(SpscConsumer& rx, uint64_t seed, uint64_t count, const WaitOptions& opts) {
  const size_t max = rx.max_message_size();
  std::mt19937 rng(static_cast<uint32_t>(seed * 3 + 1));
  uint32_t batch_left = 0;
  for (uint64_t seq = 0; seq < count; ++seq) {
    auto m = rx.try_peek();
    if (!m && m.error() == RingErrc::kWouldBlock) {
      // Messages read in place but not released may fill the ring: free them before
      // waiting, or the writer can never add the next one.
      rx.release();
      m = rx.peek(opts);
    }
    if (!m) return 20;
    if (int rc = testing::CheckMessage(seed, seq, max, *m); rc != 0) return rc;
    // Read a few in place before freeing them together.
    if (batch_left == 0) batch_left = rng() % 8 + 1;
    if (--batch_left == 0) {
      rx.release();
    } else if (!rx.advance()) {
      return 21;
    }
  }
  rx.release();
  auto end = rx.peek(opts);
  return (!end && end.error() == RingErrc::kClosed) ? 0 : 22;
}

// Runs `reader(rx)` in a forked child that signals `ready` once it holds the consumer role.
template <typename Fn>
pid_t ForkReader(const std::string& name, const testing::Signal& ready, Fn reader) {
  return testing::ForkChild([&] {
    auto r = SpscRing::Attach(name);
    if (!r) return 2;
    auto rx = r->Consumer();
    if (!rx) return 3;
    ready.Notify();
    return reader(*rx);
  });
}

void RunForkedStream(uint64_t capacity, uint64_t count, const WaitOptions& opts) {
  TestRing w(capacity, "stream", TestRing::kProducer);
  const uint64_t seed = std::random_device{}();
  testing::Signal ready;  // not waited for: the stream needs no start signal
  pid_t child = ForkReader(w.name, ready,
                           [&](SpscConsumer& rx) { return ConsumeStream(rx, seed, count, opts); });
  ProduceStream(*w.tx, seed, count, opts);
  EXPECT_EQ(WaitChildFor(child, kHang), 0) << "seed " << seed;
}

TEST(SpscCrossProcess, TenMillionRandomMessagesVerified) {
  RunForkedStream(1 << 16, kSanitized ? 300'000 : 10'000'000, WaitOptions{});
}

TEST(SpscCrossProcess, RandomMessagesWithEachWaitStrategy) {
  const uint64_t n = kSanitized ? 20'000 : 300'000;
  RunForkedStream(1 << 12, n, WaitOptions::Spin());
  RunForkedStream(1 << 12, n, WaitOptions::Sleep());
}

TEST(SpscCrossProcess, ExecdReaderAttachesByName) {
  TestRing w(1 << 20, "exec", TestRing::kProducer);
  const uint64_t seed = std::random_device{}();
  const uint64_t count = kSanitized ? 100'000 : 1'000'000;
  const std::string peer = testing::Runfile("tests/spsc/spsc_peer");
  const pid_t child =
      testing::SpawnProgram(peer, {w.name, std::to_string(count), std::to_string(seed)});
  ASSERT_GT(child, 0) << peer;
  ProduceStream(*w.tx, seed, count, WaitOptions{});
  EXPECT_EQ(WaitChildFor(child, kHang), 0) << "seed " << seed;
}

TEST(SpscThreads, TwoThreadsRandomMessagesVerified) {
  // In one process, so ThreadSanitizer sees both sides of every SYNC pair.
  TestRing t(1 << 14, "threads");
  const uint64_t count = kSanitized ? 200'000 : 2'000'000;
  int consumer_rc = -1;
  std::thread reader([&] { consumer_rc = ConsumeStream(*t.rx, 99, count, WaitOptions{}); });
  ProduceStream(*t.tx, 99, count, WaitOptions{});
  reader.join();
  EXPECT_EQ(consumer_rc, 0);
}

TEST(SpscThreads, SleepingWaitersOnBothSides) {
  // Tiny ring, kSleep on both sides: every message goes through the futex protocol.
  TestRing t(256, "sleepers");
  const uint64_t count = kSanitized ? 5'000 : 50'000;
  int consumer_rc = -1;
  std::thread reader([&] { consumer_rc = ConsumeStream(*t.rx, 5, count, WaitOptions::Sleep()); });
  ProduceStream(*t.tx, 5, count, WaitOptions::Sleep());
  reader.join();
  EXPECT_EQ(consumer_rc, 0);
}

TEST(SpscCrossProcess, BlockedReaderWakesOnCommit) {
  for (const WaitOptions& opts : {WaitOptions::Spin(), WaitOptions{}, WaitOptions::Sleep()}) {
    TestRing w(4096, "wake", TestRing::kProducer);
    testing::Signal ready;
    pid_t child = ForkReader(w.name, ready, [&](SpscConsumer& rx) {
      auto m = rx.peek(opts);  // blocks: nothing sent yet
      if (!m) return 4;
      return testing::Str(*m) == "wake" ? 0 : 5;
    });
    ASSERT_TRUE(ready.Wait());
    std::this_thread::sleep_for(milliseconds(50));  // let it reach the sleeping phase
    ASSERT_TRUE(w.tx->try_send(testing::Bytes("wake")));
    EXPECT_EQ(WaitChildFor(child, std::chrono::milliseconds(5000)), 0);
  }
}

TEST(SpscCrossProcess, BlockedReaderTimesOutInTime) {
  TestRing w(4096, "timeout", TestRing::kProducer);  // the producer: alive and silent
  testing::Signal ready;
  pid_t child = ForkReader(w.name, ready, [&](SpscConsumer& rx) {
    const auto t0 = std::chrono::steady_clock::now();
    auto m = rx.peek(WaitOptions::WithTimeout(milliseconds(200)));
    const auto dt = std::chrono::steady_clock::now() - t0;
    if (m || m.error() != RingErrc::kTimedOut) return 4;
    if (dt < milliseconds(200)) return 5;
    if (dt > seconds(3)) return 6;  // generous: hang detection, not a timing test
    return 0;
  });
  EXPECT_EQ(WaitChildFor(child, std::chrono::milliseconds(10000)), 0);
}

TEST(SpscCrossProcess, IdleBlockedReaderBurnsNoCpu) {
  TestRing w(4096, "idle", TestRing::kProducer);
  testing::Signal ready;
  pid_t child = ForkReader(w.name, ready, [&](SpscConsumer& rx) {
    auto m = rx.peek();  // default kSpinThenSleep, no timeout
    return m && m->size() == 3 ? 0 : 4;
  });
  ASSERT_TRUE(ready.Wait());
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(seconds(1));
  ASSERT_TRUE(w.tx->try_send(testing::Bytes("abc")));
  rusage ru{};
  ASSERT_EQ(WaitChildFor(child, std::chrono::milliseconds(5000), &ru), 0);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                     ru.ru_stime.tv_usec / 1e6;
  // < 5% of a core over the whole child life (which includes attaching).
  EXPECT_LT(cpu, 0.05 * wall) << "child used " << cpu << " s CPU in " << wall << " s";
}

TEST(SpscCrossProcess, WriterCloseWakesBlockedReader) {
  TestRing w(4096, "eos", TestRing::kProducer);
  ASSERT_TRUE(w.tx->try_send(testing::Bytes("last")));
  testing::Signal ready;
  pid_t child = ForkReader(w.name, ready, [&](SpscConsumer& rx) {
    auto m = rx.peek(WaitOptions::Sleep());
    if (!m || m->size() != 4) return 4;
    rx.release();
    auto end = rx.peek(WaitOptions::Sleep());  // blocks until close()
    if (end || end.error() != RingErrc::kClosed) return 5;
    return rx.peek().error() == RingErrc::kClosed ? 0 : 6;  // and stays closed
  });
  ASSERT_TRUE(ready.Wait());
  std::this_thread::sleep_for(milliseconds(50));
  w.tx->close();
  EXPECT_EQ(WaitChildFor(child, std::chrono::milliseconds(5000)), 0);
}

// Fills the ring so that the next send blocks.
void Fill(SpscProducer& tx) {
  std::vector<std::byte> msg(100);
  while (tx.try_send(msg)) {
  }
}

TEST(SpscCrossProcess, WriterBlockedOnFullRingReleasedWhenReaderCloses) {
  TestRing w(4096, "rclose", TestRing::kProducer);
  Fill(*w.tx);
  testing::Signal ready;
  pid_t child = ForkReader(w.name, ready, [&](SpscConsumer& rx) {
    std::this_thread::sleep_for(milliseconds(100));
    rx.close();
    return 0;
  });
  ASSERT_TRUE(ready.Wait());
  std::vector<std::byte> msg(100);
  auto r = w.tx->send(msg, WaitOptions::WithTimeout(seconds(20)));  // blocks until close
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), RingErrc::kClosed);
  EXPECT_EQ(WaitChildFor(child, std::chrono::milliseconds(5000)), 0);
}

TEST(SpscCrossProcess, WriterBlockedOnFullRingReleasedWhenReaderDies) {
  for (const WaitOptions& opts :
       {WaitOptions::Spin(seconds(20)), WaitOptions::WithTimeout(seconds(20)),
        WaitOptions::Sleep(seconds(20))}) {
    TestRing w(4096, "rdead", TestRing::kProducer);
    Fill(*w.tx);
    testing::Signal ready;
    pid_t child = ForkReader(w.name, ready, [&](SpscConsumer&) {
      std::this_thread::sleep_for(milliseconds(100));
      ::raise(SIGKILL);  // dies holding the consumer role
      return 0;
    });
    ASSERT_TRUE(ready.Wait());
    std::vector<std::byte> msg(100);
    auto r = w.tx->send(msg, opts);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), RingErrc::kPeerDead);
    EXPECT_EQ(WaitChildFor(child, std::chrono::milliseconds(5000)), 128 + SIGKILL);
  }
}

TEST(SpscCrossProcess, ReaderDrainsThenSeesDeadWriter) {
  TestRing reader(4096, "wdead", TestRing::kConsumer);
  testing::Signal ready;
  pid_t child = testing::ForkChild([&] {
    auto r = SpscRing::Attach(reader.name);
    if (!r) return 2;
    auto tx = r->Producer();
    if (!tx) return 3;
    for (uint32_t i = 0; i < 3; ++i) {
      if (!tx->try_send(std::as_bytes(std::span(&i, 1)))) return 4;
    }
    ready.Notify();
    std::this_thread::sleep_for(milliseconds(100));
    ::raise(SIGKILL);  // no close(): a crash
    return 0;
  });
  ASSERT_TRUE(ready.Wait());
  for (uint32_t i = 0; i < 3; ++i) {  // everything committed is delivered first
    auto m = reader.rx->peek(WaitOptions::WithTimeout(seconds(20)));
    ASSERT_TRUE(m) << m.error().message();
    uint32_t v;
    std::memcpy(&v, m->data(), 4);
    EXPECT_EQ(v, i);
    reader.rx->release();
  }
  auto end = reader.rx->peek(WaitOptions::WithTimeout(seconds(20)));
  ASSERT_FALSE(end);
  EXPECT_EQ(end.error(), RingErrc::kPeerDead);
  EXPECT_EQ(WaitChildFor(child, std::chrono::milliseconds(5000)), 128 + SIGKILL);
}

}  // namespace
}  // namespace shmlink
