// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// shmlink-bridge end to end: real bridge processes on two "hosts" (network namespaces
// joined by a veth pair, or loopback where namespaces are not permitted), real shm rings
// and queues, real kill -9. Local producers and consumers are forked children using the
// unchanged shmlink API; they never see the network.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "tests/bridge/bridge_test_util.h"

#include <shmlink/mpmc_queue.h>
#include <shmlink/ring_error.h>
#include <shmlink/spsc_ring.h>
#include <shmlink/topic.h>

namespace shmlink::testing {
namespace {

using std::chrono::milliseconds;

constexpr uint64_t kMessages = kSanitized ? 20000 : 100000;

// Per-sequence receipt counts, shared with forked consumers.
struct Receipts {
  static constexpr uint64_t kMax = 100000;
  std::atomic<uint32_t> plain[kMax];
  std::atomic<uint32_t> flagged[kMax];
  std::atomic<uint64_t> total{0};
  std::atomic<uint64_t> bad{0};  // checksum failures or sequences out of range
  std::atomic<uint64_t> by_host[2];
  std::atomic<bool> stop{false};
};

class BridgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bridge_ = Runfile("bridge/shmlink-bridge");
    const char* tmp = std::getenv("TEST_TMPDIR");
    logdir_ = tmp ? tmp : "/tmp";
    run_ = UniqueSuffix();
    src_ = UniqueShmName("bridgeA");
    dst_ = UniqueShmName("bridgeB");
  }
  void TearDown() override {
    for (pid_t p : pids_) {
      int st = 0;
      // 0: still running; -1 (ECHILD): already reaped by the test.
      if (p > 0 && ::waitpid(p, &st, WNOHANG) == 0) {
        ::kill(p, SIGKILL);
        ::waitpid(p, &st, 0);
      }
    }
    ::shm_unlink(src_.c_str());
    ::shm_unlink(dst_.c_str());
  }

  // Starts a bridge on host A (export) or B (import); its output goes to log(tag).
  pid_t StartBridge(char host, const std::string& tag, std::vector<std::string> args,
                    const std::string& key = "bridge test key") {
    std::vector<std::string> argv = {bridge_};
    argv.insert(argv.end(), args.begin(), args.end());
    // Sanitized bridges run several times slower on a loaded machine: give silence longer.
    argv.insert(argv.end(),
                {"--heartbeat-ms", "100", "--peer-timeout-ms", kSanitized ? "5000" : "1000"});
    pid_t p = SpawnLogged(
        hosts_.On(host, argv), Log(tag),
        {"SHMLINK_BRIDGE_AUTHKEY=" + key,
         "TSAN_OPTIONS=suppressions=" + Runfile("tests/bridge/tsan_zmq.supp"),
         std::string("SHMLINK_LOG=") +
             (std::getenv("BRIDGE_TEST_LOG") ? std::getenv("BRIDGE_TEST_LOG") : "info")});
    EXPECT_GT(p, 0);
    pids_.push_back(p);
    return p;
  }
  pid_t Export(const std::string& kind, const std::string& tag = "export",
               std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {"export", kind, src_, "--bind", hosts_.bind_endpoint()};
    a.insert(a.end(), extra.begin(), extra.end());
    return StartBridge('A', tag, a);
  }
  pid_t Import(const std::string& kind, const std::string& tag = "import",
               std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {"import", kind, dst_, "--connect", hosts_.connect_endpoint()};
    a.insert(a.end(), extra.begin(), extra.end());
    return StartBridge('B', tag, a);
  }
  std::string Log(const std::string& tag) const {
    return logdir_ + "/bridge-" + run_ + "-" + tag + ".log";
  }
  void Track(pid_t p) { pids_.push_back(p); }
  // Waits until the importing bridge logged its session (so the test's data crosses).
  void WaitConnected(const std::string& tag) {
    EXPECT_TRUE(WaitUntil(
        [&] { return ReadFile(Log(tag)).find("connected to the exporter") != std::string::npos; },
        milliseconds(10000)))
        << ReadFile(Log(tag));
  }
  // Dumps every bridge log (on failure).
  void DumpLogs(const std::vector<std::string>& tags) const {
    for (const auto& t : tags)
      std::fprintf(stderr, "---- %s\n%s", t.c_str(), ReadFile(Log(t)).c_str());
  }

  TwoHosts hosts_;
  std::string bridge_, logdir_, run_, src_, dst_;
  std::vector<pid_t> pids_;
};

// Attaches to `name` (retrying until someone created it).
template <typename T>
Expected<T> AttachWhenThere(const std::string& name) {
  Expected<T> r = T::Attach(name);
  for (int i = 0; i < 1000 && !r; ++i) {
    std::this_thread::sleep_for(milliseconds(5));
    r = T::Attach(name);
  }
  return r;
}

int ProduceRing(const std::string& name, uint64_t n) {
  auto ring = AttachWhenThere<SpscRing>(name);
  if (!ring) return 10;
  auto tx = ring->Producer();
  if (!tx) return 11;
  for (uint64_t i = 0; i < n; ++i) {
    const size_t size = MessageSize(i, 16, 256);
    auto buf = tx->reserve(size, WaitOptions::WithTimeout(std::chrono::seconds(20)));
    // The exporting bridge is this ring's reader: if it dies while we wait for space, we
    // see kPeerDead; a restarted bridge takes the role over, so try again.
    for (int retry = 0; !buf && buf.error() == make_error_code(RingErrc::kPeerDead) && retry < 2000;
         ++retry) {
      std::this_thread::sleep_for(milliseconds(5));
      buf = tx->reserve(size, WaitOptions::WithTimeout(std::chrono::seconds(20)));
    }
    if (!buf) return 12;
    FillMessage(i, buf->data(), size);
    if (i % 64 == 63) tx->commit();
  }
  tx->close();
  return 0;
}

int ProduceQueue(const std::string& name, uint64_t first, uint64_t n) {
  auto q = AttachWhenThere<MpmcQueue>(name);
  if (!q) return 10;
  auto tx = q->Producer();
  if (!tx) return 11;
  std::byte buf[256];
  for (uint64_t i = first; i < first + n; ++i) {
    const size_t size = MessageSize(i, 16, 200);
    FillMessage(i, buf, size);
    if (!tx->push(std::span(buf, size), WaitOptions::WithTimeout(std::chrono::seconds(20)))) {
      return 12;
    }
  }
  return 0;
}

// Pops from queue `name` until r->stop, recording every receipt under host `host`.
int ConsumeQueue(const std::string& name, Receipts* r, int host) {
  auto q = AttachWhenThere<MpmcQueue>(name);
  if (!q) return 10;
  auto rx = q->Consumer();
  if (!rx) return 11;
  while (!r->stop.load()) {
    auto m = rx->claim(WaitOptions::WithTimeout(milliseconds(20)));
    if (!m) continue;
    const int64_t seq = CheckMessage(m->data.data(), m->data.size());
    if (seq < 0 || static_cast<uint64_t>(seq) >= Receipts::kMax) {
      r->bad.fetch_add(1);
    } else {
      (m->redelivered ? r->flagged : r->plain)[seq].fetch_add(1);
    }
    if (!rx->release()) return 12;
    r->by_host[host].fetch_add(1);
    r->total.fetch_add(1);
  }
  return 0;
}

// Every sequence in [0, n) arrived at least once; unflagged at most once. Returns the
// number of flagged (redelivered) receipts.
uint64_t ExpectNoLossDuplicatesFlagged(const Receipts& r, uint64_t n) {
  uint64_t missing = 0, unflagged_dups = 0, flagged = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const uint32_t p = r.plain[i].load(), f = r.flagged[i].load();
    if (p + f == 0) ++missing;
    if (p > 1) ++unflagged_dups;
    flagged += f;
  }
  EXPECT_EQ(missing, 0u) << "messages lost";
  EXPECT_EQ(unflagged_dups, 0u) << "duplicates not flagged redelivered";
  EXPECT_EQ(r.bad.load(), 0u) << "corrupt messages";
  return flagged;
}

bool AllSeen(const Receipts& r, uint64_t n) {
  if (r.total.load() < n) return false;
  for (uint64_t i = 0; i < n; ++i) {
    if (r.plain[i].load() + r.flagged[i].load() == 0) return false;
  }
  return true;
}

// ---------------------------------------------------------------- ring

TEST_F(BridgeTest, RingCarriesEveryMessageInOrder) {
  SpscRing::CreateOptions co;
  auto ring = SpscRing::Create(src_, 1 << 20, co);
  ASSERT_TRUE(ring);
  pid_t exp = Export("ring");
  pid_t imp = Import("ring");
  const uint64_t n = kMessages;
  // Consumer on host B: in order, every checksum right, until the writer's close arrives.
  auto* count = NewShared<std::atomic<int64_t>>();
  pid_t consumer = ForkChild([&] {
    auto r = AttachWhenThere<SpscRing>(dst_);
    if (!r) return 10;
    auto rx = r->Consumer();
    if (!rx) return 11;
    std::byte buf[512];
    int64_t next = 0;
    for (;;) {
      auto got = rx->recv(buf, WaitOptions::WithTimeout(std::chrono::seconds(30)));
      if (!got) return got.error() == make_error_code(RingErrc::kClosed) ? 0 : 12;
      if (CheckMessage(buf, *got) != next) return 13;  // out of order, lost or corrupt
      count->store(++next);
    }
  });
  Track(consumer);
  pid_t producer = ForkChild([&] { return ProduceRing(src_, n); });
  Track(producer);
  EXPECT_EQ(WaitChildFor(producer, milliseconds(60000)), 0);
  EXPECT_EQ(WaitChildFor(consumer, milliseconds(60000)), 0);
  EXPECT_EQ(count->load(), static_cast<int64_t>(n));
  // The end of the stream crossed too: both bridges finish on their own.
  EXPECT_EQ(WaitChildFor(exp, milliseconds(10000)), 0);
  EXPECT_EQ(WaitChildFor(imp, milliseconds(10000)), 0);
  if (HasFailure()) DumpLogs({"export", "import"});
  DeleteShared(count);
}

TEST_F(BridgeTest, RingBackpressureReachesTheProducer) {
  // A small importing ring nobody reads: the producer on host A must block (no loss, no
  // unbounded buffering), then everything flows once a reader appears.
  auto ring = SpscRing::Create(src_, 1 << 16);
  ASSERT_TRUE(ring);
  Export("ring");
  Import("ring", "import", {"--capacity", "4096", "--window-bytes", "8192"});
  auto* produced = NewShared<std::atomic<int64_t>>();
  const uint64_t n = 20000;
  pid_t producer = ForkChild([&] {
    auto r = AttachWhenThere<SpscRing>(src_);
    if (!r) return 10;
    auto tx = r->Producer();
    if (!tx) return 11;
    std::byte buf[64];
    for (uint64_t i = 0; i < n; ++i) {
      FillMessage(i, buf, 64);
      if (!tx->send(std::span(buf, 64), WaitOptions::WithTimeout(std::chrono::seconds(30)))) {
        return 12;
      }
      produced->store(static_cast<int64_t>(i + 1));
    }
    tx->close();
    return 0;
  });
  Track(producer);
  // Stalled: the producer cannot get further than what fits in the two rings + window.
  std::this_thread::sleep_for(milliseconds(1500));
  const int64_t stalled = produced->load();
  EXPECT_LT(stalled, static_cast<int64_t>(n / 4)) << "no back-pressure";
  EXPECT_FALSE(HasExited(producer));
  // A reader drains; everything arrives in order.
  auto r = AttachWhenThere<SpscRing>(dst_);
  ASSERT_TRUE(r);
  auto rx = r->Consumer();
  ASSERT_TRUE(rx);
  std::byte buf[128];
  int64_t next = 0;
  for (;;) {
    auto got = rx->recv(buf, WaitOptions::WithTimeout(std::chrono::seconds(30)));
    if (!got) {
      EXPECT_EQ(got.error(), make_error_code(RingErrc::kClosed));
      break;
    }
    ASSERT_EQ(CheckMessage(buf, *got), next);
    ++next;
  }
  EXPECT_EQ(next, static_cast<int64_t>(n));
  EXPECT_EQ(WaitChildFor(producer, milliseconds(10000)), 0);
  if (HasFailure()) DumpLogs({"export", "import"});
  DeleteShared(produced);
}

TEST_F(BridgeTest, RingResumesExactlyAfterANetworkOutage) {
  // Host A's link goes down for longer than the peer timeout while data flows: both
  // bridges report the other gone, ZeroMQ reconnects with backoff once the link is back,
  // and the importer's resume point means nothing is lost and nothing repeats.
  if (!hosts_.netns()) GTEST_SKIP() << "needs network namespaces (to cut the link)";
  auto ring = SpscRing::Create(src_, 1 << 20);
  ASSERT_TRUE(ring);
  Export("ring");
  Import("ring");
  const uint64_t n = kSanitized ? 10000 : 40000;
  auto* count = NewShared<std::atomic<int64_t>>();
  auto* go = NewShared<std::atomic<bool>>();
  pid_t consumer = ForkChild([&] {
    auto r = AttachWhenThere<SpscRing>(dst_);
    if (!r) return 10;
    auto rx = r->Consumer();
    if (!rx) return 11;
    std::byte buf[512];
    int64_t next = 0;
    for (;;) {
      auto got = rx->recv(buf, WaitOptions::WithTimeout(std::chrono::seconds(30)));
      if (!got) return got.error() == make_error_code(RingErrc::kClosed) ? 0 : 12;
      if (CheckMessage(buf, *got) != next) return 13;  // lost, repeated or corrupt
      count->store(++next);
    }
  });
  Track(consumer);
  // The first half is paced (data is flowing when the link goes down), the rest waits
  // until the link is back.
  pid_t producer = ForkChild([&] {
    auto r = AttachWhenThere<SpscRing>(src_);
    if (!r) return 10;
    auto tx = r->Producer();
    if (!tx) return 11;
    for (uint64_t i = 0; i < n; ++i) {
      if (i < n / 2 && i % 20 == 19) std::this_thread::sleep_for(milliseconds(1));
      while (i == n / 2 && !go->load()) std::this_thread::sleep_for(milliseconds(5));
      const size_t size = MessageSize(i, 16, 256);
      auto buf = tx->reserve(size, WaitOptions::WithTimeout(std::chrono::seconds(20)));
      if (!buf) return 12;
      FillMessage(i, buf->data(), size);
      tx->commit();
    }
    tx->close();
    return 0;
  });
  Track(producer);
  ASSERT_TRUE(
      WaitUntil([&] { return count->load() >= static_cast<int64_t>(n / 4); }, milliseconds(30000)));
  ASSERT_TRUE(hosts_.Cut());
  EXPECT_TRUE(WaitUntil(
      [&] {
        return ReadFile(Log("export")).find("gone") != std::string::npos &&
               ReadFile(Log("import")).find("gone") != std::string::npos;
      },
      milliseconds(15000)))
      << "a vanished peer must be reported on both sides";
  ASSERT_TRUE(hosts_.Restore());
  go->store(true);
  EXPECT_EQ(WaitChildFor(producer, milliseconds(60000)), 0);
  EXPECT_EQ(WaitChildFor(consumer, milliseconds(60000)), 0);
  EXPECT_EQ(count->load(), static_cast<int64_t>(n));
  if (HasFailure()) DumpLogs({"export", "import"});
  DeleteShared(count);
  DeleteShared(go);
}

// ---------------------------------------------------------------- queue

TEST_F(BridgeTest, QueueDeliversEachMessageOnceToConsumersOnBothHosts) {
  auto q = MpmcQueue::Create(src_, 1024, 256);
  ASSERT_TRUE(q);
  Export("queue");
  Import("queue", "import", {"--slots", "1024", "--max-message-size", "256"});
  WaitConnected("import");
  auto* r = NewShared<Receipts>();
  const uint64_t n = kMessages;
  pid_t ca = ForkChild([&] { return ConsumeQueue(src_, r, 0); });  // host A, local
  pid_t cb = ForkChild([&] { return ConsumeQueue(dst_, r, 1); });  // host B, via bridge
  Track(ca);
  Track(cb);
  pid_t producer = ForkChild([&] { return ProduceQueue(src_, 0, n); });
  Track(producer);
  EXPECT_EQ(WaitChildFor(producer, milliseconds(60000)), 0);
  EXPECT_TRUE(WaitUntil([&] { return r->total.load() >= n; }, milliseconds(30000)));
  std::this_thread::sleep_for(milliseconds(300));  // a duplicate would show up by now
  r->stop.store(true);
  EXPECT_EQ(WaitChildFor(ca, milliseconds(5000)), 0);
  EXPECT_EQ(WaitChildFor(cb, milliseconds(5000)), 0);
  EXPECT_EQ(r->total.load(), n) << "each message exactly once";
  EXPECT_EQ(ExpectNoLossDuplicatesFlagged(*r, n), 0u) << "nothing redelivered while all is up";
  EXPECT_GT(r->by_host[1].load(), 0u) << "host B got none";
  std::fprintf(stderr, "queue: host A consumed %llu, host B %llu\n",
               static_cast<unsigned long long>(r->by_host[0].load()),
               static_cast<unsigned long long>(r->by_host[1].load()));
  if (HasFailure()) DumpLogs({"export", "import"});
  DeleteShared(r);
}

// kill -9 one bridge while messages flow, restart it: nothing committed is lost, and a
// message seen twice is flagged redelivered the second time.
class BridgeCrashTest : public BridgeTest {
 protected:
  void Run(bool kill_exporter) {
    auto q = MpmcQueue::Create(src_, 1024, 256);
    ASSERT_TRUE(q);
    pid_t exp = Export("queue", "export1");
    pid_t imp = Import("queue", "import1", {"--slots", "1024", "--max-message-size", "256"});
    auto* r = NewShared<Receipts>();
    const uint64_t n = kSanitized ? 10000 : 40000;
    pid_t cb = ForkChild([&] { return ConsumeQueue(dst_, r, 1); });  // host B only
    Track(cb);
    pid_t producer = ForkChild([&] { return ProduceQueue(src_, 0, n); });
    Track(producer);
    ASSERT_TRUE(WaitUntil([&] { return r->total.load() >= n / 4; }, milliseconds(30000)));
    ::kill(kill_exporter ? exp : imp, SIGKILL);
    WaitChild(kill_exporter ? exp : imp);
    std::this_thread::sleep_for(milliseconds(200));
    if (kill_exporter) {
      Export("queue", "export2");
    } else {
      Import("queue", "import2", {"--slots", "1024", "--max-message-size", "256"});
    }
    EXPECT_EQ(WaitChildFor(producer, milliseconds(60000)), 0);
    EXPECT_TRUE(WaitUntil([&] { return AllSeen(*r, n); }, milliseconds(30000)));
    if (!kill_exporter) {
      EXPECT_NE(ReadFile(Log("export1")).find("gone"), std::string::npos)
          << "the exporter did not report the importer's disappearance";
    }
    std::this_thread::sleep_for(milliseconds(300));
    r->stop.store(true);
    EXPECT_EQ(WaitChildFor(cb, milliseconds(5000)), 0);
    const uint64_t flagged = ExpectNoLossDuplicatesFlagged(*r, n);
    std::fprintf(stderr, "kill -9 %s: %llu receipts for %llu messages, %llu flagged redelivered\n",
                 kill_exporter ? "exporter" : "importer",
                 static_cast<unsigned long long>(r->total.load()),
                 static_cast<unsigned long long>(n), static_cast<unsigned long long>(flagged));
    if (HasFailure()) DumpLogs({"export1", "import1", kill_exporter ? "export2" : "import2"});
    DeleteShared(r);
  }
};

TEST_F(BridgeCrashTest, QueueSurvivesKill9OfTheExportingBridge) { Run(true); }
TEST_F(BridgeCrashTest, QueueSurvivesKill9OfTheImportingBridge) { Run(false); }

// A ring across a bridge crash: nothing lost, order kept; the messages that were in flight
// may arrive twice (a ring has no redelivered flag), as a replay of the sequence just seen.
class BridgeRingCrashTest : public BridgeTest, public ::testing::WithParamInterface<bool> {};

TEST_P(BridgeRingCrashTest, RingLosesNothingAcrossKill9) {
  const bool kill_exporter = GetParam();
  auto ring = SpscRing::Create(src_, 1 << 20);
  ASSERT_TRUE(ring);
  pid_t exp = Export("ring", "export1");
  pid_t imp = Import("ring", "import1");
  const uint64_t n = kSanitized ? 10000 : 40000;
  struct Progress {
    std::atomic<int64_t> max_seen{-1};
    std::atomic<int64_t> replayed{0};
  };
  auto* pr = NewShared<Progress>();
  pid_t consumer = ForkChild([&] {
    auto r = AttachWhenThere<SpscRing>(dst_);
    if (!r) return 10;
    auto rx = r->Consumer();
    if (!rx) return 11;
    std::byte buf[512];
    int64_t max_seen = -1;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      auto got = rx->recv(buf, WaitOptions::WithTimeout(milliseconds(100)));
      if (!got) {
        if (got.error() == make_error_code(RingErrc::kClosed)) return 0;
        continue;  // timed out, or the importer (our writer) died: a new one takes over
      }
      const int64_t seq = CheckMessage(buf, *got);
      if (seq < 0) return 13;             // corrupt
      if (seq > max_seen + 1) return 14;  // a message was lost
      if (seq <= max_seen) {
        pr->replayed.fetch_add(1);
      } else {
        max_seen = seq;
        pr->max_seen.store(seq);
      }
    }
    return 15;
  });
  Track(consumer);
  pid_t producer = ForkChild([&] { return ProduceRing(src_, n); });
  Track(producer);
  ASSERT_TRUE(WaitUntil([&] { return pr->max_seen.load() >= static_cast<int64_t>(n / 4); },
                        milliseconds(30000)));
  ::kill(kill_exporter ? exp : imp, SIGKILL);
  WaitChild(kill_exporter ? exp : imp);
  if (kill_exporter) {
    Export("ring", "export2");
  } else {
    // The exporter notices the silence (peer_timeout_ms, 2 s) and reports the importer gone,
    // then serves the new one. The bound leaves room for a sanitizer build on a busy machine.
    EXPECT_TRUE(
        WaitUntil([&] { return ReadFile(Log("export1")).find("gone") != std::string::npos; },
                  milliseconds(20000)));
    Import("ring", "import2");
  }
  EXPECT_EQ(WaitChildFor(producer, milliseconds(60000)), 0);
  EXPECT_EQ(WaitChildFor(consumer, milliseconds(60000)), 0);
  EXPECT_EQ(pr->max_seen.load(), static_cast<int64_t>(n - 1));
  std::fprintf(stderr, "ring, kill -9 %s: %lld messages replayed after the restart\n",
               kill_exporter ? "exporter" : "importer",
               static_cast<long long>(pr->replayed.load()));
  if (HasFailure()) {
    DumpLogs({"export1", "import1", kill_exporter ? "export2" : "import2"});
  }
  DeleteShared(pr);
}

INSTANTIATE_TEST_SUITE_P(KillExporterOrImporter, BridgeRingCrashTest, ::testing::Bool());

// ---------------------------------------------------------------- topic

// Subscribes to topic `name` (retrying until it exists), flags *joined, then receives until
// `n` messages arrived or the deadline: sequence numbers carried in the payload must
// increase, checksums must hold. Counts in *got, the last payload sequence in *last.
int SubscribeTopic(const std::string& name, uint64_t n, std::atomic<bool>* joined,
                   std::atomic<int64_t>* got, std::atomic<int64_t>* last) {
  auto t = AttachWhenThere<Topic>(name);
  if (!t) return 10;
  auto sub = t->Subscriber();
  if (!sub) return 11;
  joined->store(true);
  int64_t prev = -1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (got->load() < static_cast<int64_t>(n) && std::chrono::steady_clock::now() < deadline) {
    auto m = sub->receive(WaitOptions::WithTimeout(milliseconds(100)));
    if (!m) continue;
    const int64_t seq = CheckMessage(m->data.data(), m->data.size());
    if (!sub->release()) continue;
    if (seq <= prev) return 13;  // corrupt, repeated or out of order
    prev = seq;
    last->store(seq);
    got->fetch_add(1);
  }
  return got->load() == static_cast<int64_t>(n) ? 0 : 14;
}

int PublishTopic(const std::string& name, uint64_t first, uint64_t n) {
  auto t = AttachWhenThere<Topic>(name);
  if (!t) return 10;
  auto pub = t->Publisher();
  if (!pub) return 11;
  std::byte buf[256];
  for (uint64_t i = first; i < first + n; ++i) {
    const size_t size = MessageSize(i, 16, 200);
    FillMessage(i, buf, size);
    if (!pub->send(std::span(buf, size), WaitOptions::WithTimeout(std::chrono::seconds(20)))) {
      return 12;
    }
  }
  return 0;
}

TEST_F(BridgeTest, TopicReachesEveryImportingHostInOrder) {
  // Two importing bridges (two hosts' worth: separate processes and local topics).
  TopicOptions to;
  auto topic = Topic::Create(src_, to);
  ASSERT_TRUE(topic);
  const std::string dst2 = UniqueShmName("bridgeC");
  Export("topic");
  Import("topic", "import");
  StartBridge('B', "import2", {"import", "topic", dst2, "--connect", hosts_.connect_endpoint()});
  WaitConnected("import");
  WaitConnected("import2");
  const uint64_t n = kMessages;
  struct Sub {
    std::atomic<bool> joined{false};
    std::atomic<int64_t> got{0}, last{-1};
  };
  auto* s1 = NewShared<Sub>();
  auto* s2 = NewShared<Sub>();
  pid_t c1 = ForkChild([&] { return SubscribeTopic(dst_, n, &s1->joined, &s1->got, &s1->last); });
  pid_t c2 = ForkChild([&] { return SubscribeTopic(dst2, n, &s2->joined, &s2->got, &s2->last); });
  Track(c1);
  Track(c2);
  ASSERT_TRUE(
      WaitUntil([&] { return s1->joined.load() && s2->joined.load(); }, milliseconds(10000)));
  pid_t producer = ForkChild([&] { return PublishTopic(src_, 0, n); });
  Track(producer);
  EXPECT_EQ(WaitChildFor(producer, milliseconds(60000)), 0);
  EXPECT_EQ(WaitChildFor(c1, milliseconds(60000)), 0) << s1->got.load();
  EXPECT_EQ(WaitChildFor(c2, milliseconds(60000)), 0) << s2->got.load();
  EXPECT_EQ(s1->got.load(), static_cast<int64_t>(n));
  EXPECT_EQ(s2->got.load(), static_cast<int64_t>(n));
  EXPECT_EQ(ReadFile(Log("import")).find("lost"), std::string::npos);
  if (HasFailure()) DumpLogs({"export", "import", "import2"});
  ::shm_unlink(dst2.c_str());
  DeleteShared(s1);
  DeleteShared(s2);
}

TEST_F(BridgeTest, TopicGapsAreCountedLosses) {
  // A kOverwrite topic on host A and its exporting bridge stopped (SIGSTOP) while the
  // publisher laps it: on host B the importer reports the gap and counts every message
  // that did not arrive; the subscriber sees the rest in order.
  TopicOptions to;
  to.capacity = 1 << 16;
  to.policy = TopicPolicy::kOverwrite;
  auto topic = Topic::Create(src_, to);
  ASSERT_TRUE(topic);
  pid_t exp = Export("topic");
  pid_t imp = Import("topic");
  WaitConnected("import");
  const uint64_t n = 20000;
  struct Sub {
    std::atomic<bool> joined{false};
    std::atomic<int64_t> got{0}, last{-1};
  };
  auto* s = NewShared<Sub>();
  pid_t c = ForkChild([&] { return SubscribeTopic(dst_, n, &s->joined, &s->got, &s->last); });
  Track(c);
  ASSERT_TRUE(WaitUntil([&] { return s->joined.load(); }, milliseconds(10000)));
  ASSERT_EQ(PublishTopic(src_, 0, 1), 0);  // the stream has begun on host B
  ASSERT_TRUE(WaitUntil([&] { return s->got.load() == 1; }, milliseconds(10000)));
  ::kill(exp, SIGSTOP);
  ASSERT_EQ(PublishTopic(src_, 1, n - 2), 0);  // laps the stopped bridge many times over
  ::kill(exp, SIGCONT);
  std::this_thread::sleep_for(milliseconds(300));
  {  // one more message: it must arrive, and mark the end of the gap
    auto pub = topic->Publisher();
    ASSERT_TRUE(pub);
    std::byte b[16];
    FillMessage(n - 1, b, 16);
    ASSERT_TRUE(pub->send(std::span(b, 16)));
  }
  EXPECT_TRUE(WaitUntil([&] { return s->last.load() == static_cast<int64_t>(n - 1); },
                        milliseconds(10000)));
  ::kill(imp, SIGTERM);
  EXPECT_EQ(WaitChildFor(imp, milliseconds(5000)), 0);
  const std::string log = ReadFile(Log("import"));
  EXPECT_NE(log.find("lost messages"), std::string::npos) << log;
  // "..., N topic messages lost": received + lost = published.
  const size_t at = log.rfind(" topic messages lost");
  ASSERT_NE(at, std::string::npos) << log;
  const size_t from = log.rfind(' ', at - 1) + 1;
  const int64_t lost = std::stoll(log.substr(from, at - from));
  EXPECT_GT(lost, 0);
  EXPECT_EQ(s->got.load() + lost, static_cast<int64_t>(n)) << log;
  ::kill(c, SIGKILL);
  if (HasFailure()) DumpLogs({"export", "import"});
  DeleteShared(s);
}

TEST_F(BridgeTest, TopicEndOfStreamReachesImportingHosts) {
  // The publisher on host A closes its topic: each importing bridge closes its local topic
  // after the last message (its subscriber reads everything, then kClosed) and exits 0.
  // A second importer that connects after the close gets the end too.
  TopicOptions to;
  auto topic = Topic::Create(src_, to);
  ASSERT_TRUE(topic);
  const std::string dst2 = UniqueShmName("bridgeC");
  Export("topic");
  pid_t imp = Import("topic");
  WaitConnected("import");
  struct Sub {
    std::atomic<bool> joined{false};
    std::atomic<int64_t> got{0}, last{-1};
    std::atomic<bool> closed{false};
  };
  auto* s = NewShared<Sub>();
  pid_t c = ForkChild([&] {
    auto t = AttachWhenThere<Topic>(dst_);
    if (!t) return 10;
    auto sub = t->Subscriber();
    if (!sub) return 11;
    s->joined.store(true);
    for (;;) {
      auto m = sub->receive(WaitOptions::WithTimeout(std::chrono::seconds(30)));
      if (!m) {
        s->closed.store(m.error() == make_error_code(RingErrc::kClosed));
        return s->closed.load() ? 0 : 12;
      }
      s->last.store(CheckMessage(m->data.data(), m->data.size()));
      if (!sub->release()) return 13;
      s->got.fetch_add(1);
    }
  });
  Track(c);
  ASSERT_TRUE(WaitUntil([&] { return s->joined.load(); }, milliseconds(10000)));
  const uint64_t n = 5000;
  {
    auto pub = topic->Publisher();
    ASSERT_TRUE(pub);
    std::byte buf[256];
    for (uint64_t i = 0; i < n; ++i) {
      const size_t size = MessageSize(i, 16, 200);
      FillMessage(i, buf, size);
      ASSERT_TRUE(
          pub->send(std::span(buf, size), WaitOptions::WithTimeout(std::chrono::seconds(20))));
    }
    pub->close();
  }
  EXPECT_EQ(WaitChildFor(c, milliseconds(60000)), 0);
  EXPECT_TRUE(s->closed.load());
  EXPECT_EQ(s->got.load(), static_cast<int64_t>(n));
  EXPECT_EQ(s->last.load(), static_cast<int64_t>(n - 1));
  EXPECT_EQ(WaitChildFor(imp, milliseconds(20000)), 0);
  const std::string log = ReadFile(Log("import"));
  EXPECT_NE(log.find("the exporter's publisher closed it"), std::string::npos) << log;
  EXPECT_NE(log.find(" 0 topic messages lost"), std::string::npos) << log;
  // A late importer: its topic is closed at once (nothing was published since it came).
  pid_t late = StartBridge('B', "import2",
                           {"import", "topic", dst2, "--connect", hosts_.connect_endpoint()});
  EXPECT_EQ(WaitChildFor(late, milliseconds(20000)), 0);
  auto t2 = Topic::Attach(dst2);
  ASSERT_TRUE(t2);
  auto sub2 = t2->Subscriber();
  ASSERT_TRUE(sub2);
  auto m2 = sub2->try_receive();
  ASSERT_FALSE(m2);
  EXPECT_EQ(m2.error(), make_error_code(RingErrc::kClosed));
  if (HasFailure()) DumpLogs({"export", "import", "import2"});
  ::shm_unlink(dst2.c_str());
  DeleteShared(s);
}

// ---------------------------------------------------------------- security

class BridgeAuthTest : public BridgeTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(BridgeAuthTest, WrongKeyIsRefusedWithAClearLine) {
  const std::string mode = GetParam();
  auto q = MpmcQueue::Create(src_, 64, 64);
  ASSERT_TRUE(q);
  pid_t exp = StartBridge(
      'A', "export", {"export", "queue", src_, "--bind", hosts_.bind_endpoint(), "--auth", mode});
  pid_t imp =
      StartBridge('B', "import",
                  {"import", "queue", dst_, "--connect", hosts_.connect_endpoint(), "--auth", mode},
                  "not the key");
  const std::string elog = Log("export");
  EXPECT_TRUE(WaitUntil([&] { return ReadFile(elog).find("refused") != std::string::npos; },
                        milliseconds(10000)))
      << ReadFile(elog);
  // No data flows: the importer never got a session.
  auto tx = q->Producer();
  ASSERT_TRUE(tx);
  std::byte b[16];
  FillMessage(1, b, 16);
  ASSERT_TRUE(tx->try_push(b));
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(q->size(), 1u) << "the refused importer received a message";
  EXPECT_EQ(WaitChildFor(imp, milliseconds(10000)), 3) << "importer exits: authentication refused";
  EXPECT_FALSE(HasExited(exp)) << "the exporter stays up";
  std::fprintf(stderr, "%s exporter log:\n%s", mode.c_str(), ReadFile(elog).c_str());
  std::fprintf(stderr, "%s importer log:\n%s", mode.c_str(), ReadFile(Log("import")).c_str());
}

INSTANTIATE_TEST_SUITE_P(Modes, BridgeAuthTest, ::testing::Values("hmac", "curve"));

TEST_F(BridgeTest, GarbageOnThePortIsLoggedAndDropped) {
  auto q = MpmcQueue::Create(src_, 1024, 256);
  ASSERT_TRUE(q);
  // HMAC mode: a ZeroMQ peer without the key reaches the bridge's own decoder.
  pid_t exp = Export("queue", "export", {"--auth", "hmac"});
  const std::string elog = Log("export");
  ASSERT_TRUE(WaitUntil([&] { return ReadFile(elog).find("exporting") != std::string::npos; },
                        milliseconds(5000)));
  // Raw bytes from host B: not ZeroMQ at all.
  std::vector<std::string> argv = {Runfile("tests/bridge/bridge_garbage"),
                                   hosts_.netns() ? "10.77.0.1" : "127.0.0.1",
                                   std::to_string(hosts_.port())};
  pid_t g = SpawnLogged(hosts_.On('B', argv), Log("garbage"),
                        {"TSAN_OPTIONS=suppressions=" + Runfile("tests/bridge/tsan_zmq.supp")});
  Track(g);
  EXPECT_EQ(WaitChildFor(g, milliseconds(10000)), 0) << ReadFile(Log("garbage"));
  EXPECT_TRUE(WaitUntil(
      [&] {
        const std::string s = ReadFile(elog);
        return s.find("refused connection") != std::string::npos &&
               s.find("dropped malformed message") != std::string::npos;
      },
      milliseconds(10000)))
      << ReadFile(elog);
  EXPECT_FALSE(HasExited(exp)) << "the exporter stays up";
  // And still serves a real importer.
  Import("queue", "import", {"--slots", "1024", "--max-message-size", "256", "--auth", "hmac"});
  WaitConnected("import");
  auto* r = NewShared<Receipts>();
  pid_t cb = ForkChild([&] { return ConsumeQueue(dst_, r, 1); });
  Track(cb);
  pid_t producer = ForkChild([&] { return ProduceQueue(src_, 0, 1000); });
  Track(producer);
  EXPECT_TRUE(WaitUntil([&] { return r->total.load() >= 1000; }, milliseconds(20000)));
  r->stop.store(true);
  EXPECT_EQ(WaitChildFor(cb, milliseconds(5000)), 0);
  EXPECT_EQ(ExpectNoLossDuplicatesFlagged(*r, 1000), 0u);
  if (HasFailure()) DumpLogs({"export", "import"});
  DeleteShared(r);
}

}  // namespace
}  // namespace shmlink::testing
