// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// shmlink-pubsub benchmark cases: one Topic (block policy: lossless, like the iceoryx
// cases), one publisher process and N = 1, 2, 4 subscriber processes.
//
// Placement on this project's 2-core machines: the publisher is pinned to cfg.cpu_a,
// subscriber i to cfg.cpu_b for even i and to cfg.cpu_a for odd i. With more than one
// subscriber, processes share cores, so spinning waiters steal time from the processes
// they wait for: that is why both wait strategies are measured.
//   shmlink-pubsub          subscribers spin (WaitStrategy::kSpin)
//   shmlink-pubsub:sleep    subscribers sleep on the topic's futex when idle (kSleep)
// The publisher waits for space (the slowest subscriber) the same way: spinning in the
// first variant, spin-then-sleep (the default WaitOptions) in the second.
//
// throughput: the publisher loans `size` bytes, memcpy's the message in and publishes, as
//   fast as the slowest subscriber allows. Each subscriber reads every message in place
//   (sums it as 64-bit words) and releases it, and measures its own window (warm-up, then
//   cfg.seconds_per_rep). Reported: msgs/s of the slowest subscriber (the note lists all).
// publish cost (shmlink-pubsub:publish): the publisher's own rate, kOverwrite policy, with
//   N = 1, 2, 4, 64 subscribers attached (handles held by one other process) that do not
//   read: what one publish costs as subscribers are added. Not a delivery rate: the
//   record's msgs_per_s is publishes/s, its note says so.
// rtt: the publisher publishes one message and waits (spinning) for subscriber 0 to echo
//   its first 8 bytes back on an SPSC ring; the other subscribers consume every message
//   too. One sample per round trip.
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench/cases.h"
#include "bench/harness.h"

#include <shmlink/spsc_ring.h>
#include <shmlink/topic.h>

namespace shmlink::bench {
namespace {

constexpr int kMaxSubs = 8;

struct Shared {
  alignas(64) std::atomic<uint32_t> arrived{0};
  alignas(64) std::atomic<uint32_t> finished{0};
  struct Sub {
    std::atomic<uint64_t> count{0};
    std::atomic<uint64_t> window_ns{1};
  } sub[kMaxSubs];
};

std::string UniqueName(const char* tag) {
  static int counter = 0;
  return "/shmlink-bench-" + std::string(tag) + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(counter++);
}

uint64_t TopicCapacityFor(uint64_t size) {
  uint64_t cap = 1 << 20;
  while (TopicMaxMessageSizeLimit(cap) < size || cap < 16 * (size + 32)) cap <<= 1;
  return cap;
}

// SYNC(barrier): seq_cst RMW and loads; set-up happens-before every timed loop.
void Arrive(Shared* sh, uint32_t parties) {
  sh->arrived.fetch_add(1, std::memory_order_seq_cst);
  while (sh->arrived.load(std::memory_order_seq_cst) < parties) std::this_thread::yield();
}

int CpuOfSubscriber(const BenchConfig& cfg, int i) { return i % 2 == 0 ? cfg.cpu_b : cfg.cpu_a; }

// Forks `n` subscriber processes running body(i); returns their pids.
template <typename Body>
std::vector<pid_t> ForkSubscribers(const BenchConfig& cfg, int n, Body&& body) {
  std::vector<pid_t> pids;
  std::fflush(nullptr);
  for (int i = 0; i < n; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      PinToCpu(CpuOfSubscriber(cfg, i));
      ::_exit(body(i));
    }
    pids.push_back(pid);
  }
  return pids;
}

std::string Reap(const std::vector<pid_t>& pids) {
  std::string err;
  for (pid_t pid : pids) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      err = "subscriber failed (status " + std::to_string(status) + ")";
    }
  }
  return err;
}

struct SharedMap {
  Shared* sh = nullptr;
  SharedMap() {
    void* p =
        ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) sh = new (p) Shared();
  }
  ~SharedMap() {
    if (sh != nullptr) ::munmap(sh, sizeof(Shared));
  }
};

std::string ThroughputRep(const BenchConfig& cfg, uint64_t size, int n, const WaitOptions& opts,
                          const WaitOptions& pub_wait, ThroughputFigures* out,
                          std::string* per_sub) {
  SharedMap map;
  if (map.sh == nullptr) return "mmap failed";
  Shared* sh = map.sh;
  TopicOptions o;
  o.capacity = TopicCapacityFor(size);
  o.policy = TopicPolicy::kBlock;
  auto topic = Topic::Create(UniqueName("topic"), o);
  if (!topic) return "create: " + topic.error().message();
  (void)topic->Unlink();  // every process holds the mapping; nothing left in /dev/shm
  auto pids = ForkSubscribers(cfg, n, [&](int i) -> int {
    auto sub = topic->Subscriber();
    if (!sub) return 2;
    Arrive(sh, n + 1);
    ThroughputWindow window(cfg, size >= 4096 ? 1 : 256);
    uint64_t count = 0, sink = 0;
    bool done = false;
    for (;;) {
      auto m = sub->receive(opts);
      if (!m) return m.error() == RingErrc::kClosed ? (done ? 0 : 3) : 4;
      sink += TouchBytes(m->data.data(), m->data.size());
      if (!sub->release()) return 5;
      if (done) continue;  // drain until the publisher closes
      if (window.measuring()) ++count;
      if (window.Tick()) {
        sh->sub[i].count.store(count, std::memory_order_relaxed);
        sh->sub[i].window_ns.store(window.elapsed_ns(), std::memory_order_relaxed);
        sh->finished.fetch_add(1, std::memory_order_seq_cst);
        done = true;
      }
    }
    (void)sink;
  });
  PinToCpu(cfg.cpu_a);
  auto pub = topic->Publisher();
  if (!pub) return "publisher: " + pub.error().message();
  const std::vector<std::byte> src = PatternBuffer(size);
  Arrive(sh, n + 1);
  std::string err;
  for (uint64_t k = 0;; ++k) {
    if ((k & 63) == 0 && sh->finished.load(std::memory_order_seq_cst) == static_cast<uint32_t>(n)) {
      break;
    }
    auto buf = pub->loan(size, pub_wait);
    if (!buf) {
      err = "loan: " + buf.error().message();
      break;
    }
    std::memcpy(buf->data(), src.data(), size);
    (void)pub->publish();
  }
  pub->close();
  const std::string reaped = Reap(pids);
  if (!err.empty()) return err;
  if (!reaped.empty()) return reaped;
  double slowest = 0;
  *per_sub = "per subscriber msgs/s:";
  for (int i = 0; i < n; ++i) {
    const double rate = static_cast<double>(sh->sub[i].count.load()) * 1e9 /
                        static_cast<double>(sh->sub[i].window_ns.load());
    slowest = i == 0 ? rate : std::min(slowest, rate);
    *per_sub += " " + std::to_string(static_cast<uint64_t>(rate));
  }
  if (slowest <= 0) return "no messages in the measured window";
  out->msgs_per_s = slowest;
  out->bytes_per_s = slowest * static_cast<double>(size);
  return "";
}

// Publisher-only rate with n idle subscribers attached (see the file comment).
std::string PublishCostRep(const BenchConfig& cfg, uint64_t size, int n, ThroughputFigures* out) {
  SharedMap map;
  if (map.sh == nullptr) return "mmap failed";
  Shared* sh = map.sh;
  TopicOptions o;
  o.capacity = TopicCapacityFor(size);
  o.policy = TopicPolicy::kOverwrite;
  auto topic = Topic::Create(UniqueName("publish-topic"), o);
  if (!topic) return "create: " + topic.error().message();
  (void)topic->Unlink();
  // One process holds all n subscriber handles until the publisher is done.
  auto pids = ForkSubscribers(cfg, 1, [&](int) -> int {
    std::vector<TopicSubscriber> subs;
    subs.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      auto sub = topic->Subscriber();
      if (!sub) return 2;
      subs.push_back(std::move(*sub));
    }
    Arrive(sh, 2);
    while (sh->finished.load(std::memory_order_seq_cst) == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return 0;
  });
  PinToCpu(cfg.cpu_a);
  auto pub = topic->Publisher();
  if (!pub) {
    for (pid_t pid : pids) ::kill(pid, SIGKILL);
    (void)Reap(pids);
    return "publisher: " + pub.error().message();
  }
  const std::vector<std::byte> src = PatternBuffer(size);
  Arrive(sh, 2);
  const uint32_t attached = topic->subscriber_count();
  ThroughputWindow window(cfg, size >= 4096 ? 1 : 256);
  uint64_t count = 0;
  std::string err;
  for (;;) {
    auto buf = pub->loan(size, WaitOptions::Spin());
    if (!buf) {
      err = "loan: " + buf.error().message();
      break;
    }
    std::memcpy(buf->data(), src.data(), size);
    (void)pub->publish();
    if (window.measuring()) ++count;
    if (window.Tick()) break;
  }
  sh->finished.store(1, std::memory_order_seq_cst);
  pub->close();
  const std::string reaped = Reap(pids);
  if (!err.empty()) return err;
  if (!reaped.empty()) return reaped;
  if (attached != static_cast<uint32_t>(n)) {
    return std::to_string(attached) + " of " + std::to_string(n) + " subscribers attached";
  }
  return ThroughputFromCount(count, size, window.elapsed_ns(), out);
}

std::string RttRep(const BenchConfig& cfg, uint64_t size, int n, const WaitOptions& opts,
                   std::vector<uint64_t>* samples) {
  SharedMap map;
  if (map.sh == nullptr) return "mmap failed";
  Shared* sh = map.sh;
  TopicOptions o;
  o.capacity = TopicCapacityFor(size);
  o.policy = TopicPolicy::kBlock;
  auto topic = Topic::Create(UniqueName("rtt-topic"), o);
  if (!topic) return "create: " + topic.error().message();
  auto echo = SpscRing::Create(UniqueName("rtt-echo"), 4096);
  if (!echo) return "create: " + echo.error().message();
  (void)topic->Unlink();
  (void)echo->Unlink();
  auto pids = ForkSubscribers(cfg, n, [&](int i) -> int {
    auto sub = topic->Subscriber();
    if (!sub) return 2;
    std::optional<SpscProducer> tx;
    if (i == 0) {
      auto p = echo->Producer();
      if (!p) return 3;
      tx.emplace(std::move(*p));
    }
    Arrive(sh, n + 1);
    for (;;) {
      auto m = sub->receive(opts);
      if (!m) return m.error() == RingErrc::kClosed ? 0 : 4;
      uint64_t tag = 0;
      std::memcpy(&tag, m->data.data(), std::min<size_t>(8, m->data.size()));
      if (!sub->release()) return 5;
      if (tx && !tx->send(std::as_bytes(std::span(&tag, 1)), WaitOptions::Spin())) return 6;
    }
  });
  PinToCpu(cfg.cpu_a);
  auto pub = topic->Publisher();
  auto rx = echo->Consumer();
  if (!pub || !rx) return "roles";
  const std::vector<std::byte> src = PatternBuffer(std::max<uint64_t>(size, 8));
  samples->reserve(1 << 20);
  Arrive(sh, n + 1);
  const int rc = TimeRoundTrips(cfg, samples, [&](uint64_t seq) {
    auto buf = pub->loan(size, WaitOptions::Spin());
    if (!buf) return 3;
    std::memcpy(buf->data(), src.data(), size);
    if (size >= 8) std::memcpy(buf->data(), &seq, 8);
    (void)pub->publish();
    uint64_t tag = 0;
    auto r = rx->recv(std::as_writable_bytes(std::span(&tag, 1)), WaitOptions::Spin());
    if (!r) return 4;
    return size >= 8 && tag != seq ? 5 : 0;
  });
  pub->close();
  const std::string reaped = Reap(pids);
  if (rc != 0) return "round trip failed (" + std::to_string(rc) + ")";
  return reaped;
}

}  // namespace

void RunPubsubCases(const BenchConfig& cfg, const Emit& emit) {
  struct Variant {
    const char* system;
    WaitOptions opts;
    WaitOptions pub_wait;
    const char* how;
  };
  const auto limit = std::chrono::seconds(20);
  const Variant variants[] = {
      {"shmlink-pubsub", WaitOptions::Spin(), WaitOptions::Spin(limit),
       "subscribers and publisher spin"},
      {"shmlink-pubsub:sleep", WaitOptions::Sleep(), WaitOptions::WithTimeout(limit),
       "subscribers sleep on the futex when idle, publisher spins 50 us then sleeps"},
  };
  for (const Variant& v : variants) {
    for (int n : {1, 2, 4}) {
      for (uint64_t size : cfg.sizes) {
        BenchRecord rec = ThroughputRecord(v.system, size);
        rec.producers.reset();
        rec.consumers.reset();
        rec.subscribers = n;
        std::string per_sub;
        RunThroughputReps(
            cfg,
            [&](ThroughputFigures* out) {
              return ThroughputRep(cfg, size, n, v.opts, v.pub_wait, out, &per_sub);
            },
            std::string(v.how) + "; publisher loan+memcpy+publish, block policy; slowest of " +
                std::to_string(n) + " (last rep " + per_sub + ")",
            rec);
        emit(rec);
      }
      for (uint64_t size : cfg.sizes) {
        BenchRecord rec = RttRecord(v.system, size);
        rec.subscribers = n;
        RunRttReps(
            cfg,
            [&](std::vector<uint64_t>* samples) {
              std::string err = RttRep(cfg, size, n, v.opts, samples);
              if (err.empty() && samples->empty()) err = "no round trips in the measured window";
              return err;
            },
            std::string(v.how) + "; echo by subscriber 0 over an SPSC ring (spin)", rec);
        emit(rec);
      }
    }
  }
  for (int n : {1, 2, 4, 64}) {
    for (uint64_t size : cfg.sizes) {
      BenchRecord rec = ThroughputRecord("shmlink-pubsub:publish", size);
      rec.producers.reset();
      rec.consumers.reset();
      rec.subscribers = n;
      RunThroughputReps(
          cfg, [&](ThroughputFigures* out) { return PublishCostRep(cfg, size, n, out); },
          "publish cost: the publisher's own loan+memcpy+publish rate (overwrite policy) with " +
              std::to_string(n) + " attached subscribers that do not read; not a delivery rate",
          rec);
      emit(rec);
    }
  }
}

}  // namespace shmlink::bench
