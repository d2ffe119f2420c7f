// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// SpscConsumer::fd(): the reader waits in poll(2) on the eventfd while the producer writes
// from a forked child (or, for ThreadSanitizer, another thread): every message arrives,
// and the fd becomes readable when the producer closes the ring (then kClosed) and when it
// is SIGKILLed (then kPeerDead). The fd stays valid across moves of the handle.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/spsc/spsc_test_util.h"
#include "tests/test_util.h"

#include <shmlink/spsc_ring.h>

namespace shmlink {
namespace {

using testing::kSanitized;
using testing::TestRing;
using testing::WaitChildFor;

constexpr auto kHang = std::chrono::milliseconds(120'000);  // hang detection only
constexpr int kPollMs = 10'000;  // a readiness that takes longer than this is lost

// Runs `body(tx)` in a forked child holding the producer role of ring `name`; the child
// signals `ready` once it holds the role, then waits for `go` before calling body.
pid_t ForkProducer(const std::string& name, const testing::Signal& ready, const testing::Signal& go,
                   const std::function<int(SpscProducer&)>& body) {
  return testing::ForkChild([&] {
    auto r = SpscRing::Attach(name);
    if (!r) return 2;
    auto tx = r->Producer();
    if (!tx) return 3;
    ready.Notify();
    if (!go.Wait()) return 4;
    return body(*tx);
  });
}

// Writes messages [0, count) of stream `seed`, pausing now and then so the reader goes back
// to poll(2) (and the notifier to sleep) in the middle of the stream, then closes.
int ProduceWithPauses(SpscProducer& tx, uint64_t seed, uint64_t count) {
  const size_t max = tx.max_message_size();
  for (uint64_t seq = 0; seq < count; ++seq) {
    auto buf = tx.reserve(testing::MessageSize(seed, seq, max));
    if (!buf) return 10;
    testing::FillMessage(seed, seq, *buf);
    tx.commit();
    if (seq % 64 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  tx.close();
  return 0;
}

// Reads the eventfd (clears it). False if it was not readable.
bool ClearFd(int fd) {
  uint64_t v = 0;
  return ::read(fd, &v, sizeof(v)) == static_cast<ssize_t>(sizeof(v));
}

// Waits for the fd to become readable (bounded).
bool PollReadable(int fd, int timeout_ms = kPollMs) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN) != 0;
}

// The reader's loop: poll, clear, drain with try_peek until kWouldBlock; verifies messages
// [0, count) of stream `seed` and returns the error that ended the stream.
std::error_code PollAndDrain(SpscConsumer& rx, int fd, uint64_t seed, uint64_t count,
                             uint64_t* received) {
  const size_t max = rx.max_message_size();
  *received = 0;
  for (;;) {
    if (!PollReadable(fd)) return make_error_code(RingErrc::kTimedOut);
    ClearFd(fd);  // first clear, then drain (the documented protocol)
    for (;;) {
      auto m = rx.try_peek();
      if (!m) {
        if (m.error() == RingErrc::kWouldBlock) break;
        return m.error();
      }
      if (*received >= count || testing::CheckMessage(seed, *received, max, *m) != 0) {
        return make_error_code(RingErrc::kCorrupt);
      }
      ++*received;
      rx.release();
    }
  }
}

TEST(SpscFd, ForkedProducerPolledReaderReceivesEveryMessage) {
  // A small ring: the producer must also wait for space the reader frees between polls.
  TestRing t(1 << 12, "fd-stream", TestRing::kConsumer);
  const uint64_t seed = 7;
  const uint64_t count = kSanitized ? 2'000 : 20'000;
  testing::Signal ready, go;
  const pid_t child = ForkProducer(
      t.name, ready, go, [&](SpscProducer& tx) { return ProduceWithPauses(tx, seed, count); });
  ASSERT_TRUE(ready.Wait());
  const int fd = *t.rx->fd();
  ASSERT_GE(fd, 0);
  go.Notify();
  uint64_t received = 0;
  const std::error_code end = PollAndDrain(*t.rx, fd, seed, count, &received);
  EXPECT_EQ(end, RingErrc::kClosed) << end.message();
  EXPECT_EQ(received, count);
  EXPECT_EQ(WaitChildFor(child, kHang), 0);
}

TEST(SpscFd, ProducerThreadPolledReaderReceivesEveryMessage) {
  // Both sides and the notifier in one process, so ThreadSanitizer sees every SYNC pair.
  TestRing t(1 << 10, "fd-threads");
  const uint64_t seed = 11;
  const uint64_t count = kSanitized ? 2'000 : 20'000;
  const int fd = *t.rx->fd();
  int producer_rc = -1;
  std::thread writer([&] { producer_rc = ProduceWithPauses(*t.tx, seed, count); });
  uint64_t received = 0;
  const std::error_code end = PollAndDrain(*t.rx, fd, seed, count, &received);
  writer.join();
  EXPECT_EQ(end, RingErrc::kClosed) << end.message();
  EXPECT_EQ(received, count);
  EXPECT_EQ(producer_rc, 0);
}

TEST(SpscFd, BecomesReadableWhenTheWriterCloses) {
  TestRing t(1 << 12, "fd-close", TestRing::kConsumer);
  testing::Signal ready, go;
  const pid_t child = ForkProducer(t.name, ready, go, [](SpscProducer& tx) {
    tx.close();  // nothing sent: the close alone must make the fd readable
    return 0;
  });
  ASSERT_TRUE(ready.Wait());
  const int fd = *t.rx->fd();
  // The initial readiness ("something may be pending"): nothing is.
  ASSERT_TRUE(PollReadable(fd));
  ASSERT_TRUE(ClearFd(fd));
  EXPECT_EQ(t.rx->try_peek().error(), RingErrc::kWouldBlock);
  EXPECT_FALSE(PollReadable(fd, 50));
  go.Notify();
  ASSERT_TRUE(PollReadable(fd));
  ASSERT_TRUE(ClearFd(fd));
  EXPECT_EQ(t.rx->try_peek().error(), RingErrc::kClosed);
  EXPECT_EQ(WaitChildFor(child, kHang), 0);
}

TEST(SpscFd, BecomesReadableWhenTheWriterIsKilled) {
  TestRing t(1 << 12, "fd-kill", TestRing::kConsumer);
  testing::Signal ready, go;
  const pid_t child = ForkProducer(t.name, ready, go, [](SpscProducer& tx) {
    const std::byte last[8] = {};
    if (!tx.send(last)) return 5;
    for (;;) ::pause();  // holds the role until SIGKILLed
  });
  ASSERT_TRUE(ready.Wait());
  const int fd = *t.rx->fd();
  go.Notify();
  // The message sent before the death arrives first.
  ASSERT_TRUE(PollReadable(fd));
  ClearFd(fd);
  auto m = t.rx->try_peek();
  for (int i = 0; !m && m.error() == RingErrc::kWouldBlock && i < 100; ++i) {
    ASSERT_TRUE(PollReadable(fd));
    ClearFd(fd);
    m = t.rx->try_peek();
  }
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(m->size(), 8u);
  t.rx->release();
  EXPECT_EQ(t.rx->try_peek().error(), RingErrc::kWouldBlock);  // alive: nothing to report

  ASSERT_EQ(::kill(child, SIGKILL), 0);
  EXPECT_EQ(WaitChildFor(child, kHang), 128 + SIGKILL);
  // Readable within the notifier's liveness interval; then try_peek reports the death.
  const auto start = std::chrono::steady_clock::now();
  std::error_code end = make_error_code(RingErrc::kWouldBlock);
  while (end == RingErrc::kWouldBlock &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(30)) {
    ASSERT_TRUE(PollReadable(fd));
    ClearFd(fd);
    end = t.rx->try_peek().error();
  }
  EXPECT_EQ(end, RingErrc::kPeerDead) << end.message();
  // A blocking peek agrees.
  EXPECT_EQ(t.rx->peek(WaitOptions::WithTimeout(std::chrono::seconds(5))).error(),
            RingErrc::kPeerDead);
}

TEST(SpscFd, StaysValidWhenTheHandleMoves) {
  TestRing t(1 << 12, "fd-move", TestRing::kConsumer);
  TestRing other(1 << 12, "fd-move-other", TestRing::kConsumer);
  testing::Signal ready, go;
  const int fds_before = testing::OpenFdCount();
  const pid_t child = ForkProducer(t.name, ready, go, [](SpscProducer& tx) {
    const std::byte msg[16] = {std::byte{42}};
    if (!tx.send(msg)) return 5;
    tx.close();
    return 0;
  });
  ASSERT_TRUE(ready.Wait());
  const int fd = *t.rx->fd();
  const int other_fd = *other.rx->fd();
  EXPECT_EQ(testing::OpenFdCount(), fds_before + 2);

  SpscConsumer moved(std::move(*t.rx));  // move construction keeps the fd
  EXPECT_EQ(*moved.fd(), fd);
  EXPECT_EQ(t.rx->fd().error(), RingErrc::kBadState);  // the moved-from handle has none
  SpscConsumer target = std::move(*other.rx);
  target = std::move(moved);  // move assignment: the target's own fd is closed, ours kept
  EXPECT_EQ(*target.fd(), fd);
  EXPECT_EQ(::fcntl(other_fd, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
  // The target's role was released too: its eventfd and its holder-lock token are closed.
  EXPECT_EQ(testing::OpenFdCount(), fds_before + 1 - 1);

  go.Notify();
  bool got = false;
  std::error_code end;
  for (int i = 0; i < 100 && end != RingErrc::kClosed; ++i) {
    ASSERT_TRUE(PollReadable(fd));
    ClearFd(fd);
    for (;;) {
      auto m = target.try_peek();
      if (!m) {
        end = m.error();
        break;
      }
      got = m->size() == 16 && (*m)[0] == std::byte{42};
      target.release();
    }
  }
  EXPECT_TRUE(got);
  EXPECT_EQ(end, RingErrc::kClosed);
  EXPECT_EQ(WaitChildFor(child, kHang), 0);
  { SpscConsumer gone = std::move(target); }  // destruction closes the fd
  // ... and releases the role: its holder-lock token, held since before fds_before.
  EXPECT_EQ(testing::OpenFdCount(), fds_before - 2);
}

}  // namespace
}  // namespace shmlink
