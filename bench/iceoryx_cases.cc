// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// iceoryx peer (Debian iceoryx 2.0.3): zero-copy publish/subscribe through RouDi.
//
// RunIceoryxCases starts its own /usr/bin/iox-roudi with a generated config (one mempool per
// benchmark size, chunk = size + 64 B of header room), waits until RouDi prints "RouDi is
// ready for clients", runs the cases, and stops RouDi by its own PID with SIGTERM (SIGKILL
// after 10 s). If RouDi cannot start (e.g. another RouDi holds its lock), every iceoryx case
// is emitted as an error record and the comparison carries on.
//
// Per message: the sender loan()s a chunk of `size` bytes, memcpy()s the message into it
// and publish()es it; the receiver busy-polls take() (iceoryx:waitset: sleeps in a WaitSet
// when empty), reads the whole message in place (no copy out; summed as 64-bit words like
// the shmlink consumer) and release()s the chunk. Ports are lossless: subscriber queue policy
// BLOCK_PRODUCER and publisher policy WAIT_FOR_CONSUMER, queue depth 256 (64 for 64 KiB,
// 16 for 1 MiB, bounded by the mempool). Each child registers its own runtime (unique
// name) after fork; RouDi runs unpinned.
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/cases.h"
#include "bench/harness.h"
#include "bench/peer_harness.h"
#include "iceoryx_hoofs/log/logmanager.hpp"
#include "iceoryx_posh/popo/untyped_publisher.hpp"
#include "iceoryx_posh/popo/untyped_subscriber.hpp"
#include "iceoryx_posh/popo/wait_set.hpp"
#include "iceoryx_posh/runtime/posh_runtime.hpp"

namespace shmlink::bench {
namespace {

constexpr uint64_t kChunkHeaderRoom = 64;
constexpr const char* kRoudi = "/usr/bin/iox-roudi";

uint64_t ChunkSize(uint64_t size) { return (size + kChunkHeaderRoom + 7) / 8 * 8; }
uint64_t QueueDepth(uint64_t size) {
  if (size <= 4096) return 256;
  if (size <= 65536) return 64;
  return 16;
}
uint64_t PoolCount(uint64_t size, uint64_t queues) {
  // `queues` subscriber queues (two directions for the 1:1 cases) x (queue depth + one
  // loaned + one taken) + slack.
  return queues * (QueueDepth(size) + 2) + 16;
}

// A RouDi process this benchmark started; stopped by PID in the destructor.
class Roudi {
 public:
  // Starts RouDi with a config covering `sizes`; on failure returns an explanation.
  std::string Start(const std::vector<uint64_t>& sizes, uint64_t queues = 2) {
    if (access(kRoudi, X_OK) != 0) return std::string(kRoudi) + " not found (apt install iceoryx)";
    config_ = "/tmp/shmlink-compare-roudi-" + std::to_string(getpid()) + ".toml";
    {
      std::ofstream f(config_);
      f << "[general]\nversion = 1\n\n[[segment]]\n";
      std::vector<uint64_t> s = sizes;
      std::sort(s.begin(), s.end());
      s.erase(std::unique(s.begin(), s.end()), s.end());
      for (uint64_t z : s) {
        f << "\n[[segment.mempool]]\nsize = " << ChunkSize(z)
          << "\ncount = " << PoolCount(z, queues) << "\n";
      }
      if (!f) return "cannot write " + config_;
    }
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
    std::fflush(nullptr);
    pid_ = fork();
    if (pid_ < 0) return std::string("fork: ") + std::strerror(errno);
    if (pid_ == 0) {
      // RouDi runs on any core: undo a pinning inherited from the benchmark process.
      cpu_set_t all;
      CPU_ZERO(&all);
      for (long i = 0; i < sysconf(_SC_NPROCESSORS_CONF) && i < CPU_SETSIZE; ++i) CPU_SET(i, &all);
      (void)sched_setaffinity(0, sizeof all, &all);
      // If the benchmark dies without stopping it (killed, Ctrl-C), RouDi shuts down too.
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      dup2(out[1], 1);
      dup2(out[1], 2);
      execl(kRoudi, kRoudi, "-c", config_.c_str(), "-m", "on", static_cast<char*>(nullptr));
      std::perror("exec iox-roudi");
      _exit(127);
    }
    close(out[1]);
    fd_ = out[0];
    // Wait for the ready line, up to 15 s.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    std::string seen;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) > 0) {
        char buf[4096];
        ssize_t n = read(fd_, buf, sizeof buf);
        if (n <= 0) break;  // RouDi exited
        seen.append(buf, static_cast<size_t>(n));
        if (seen.find("RouDi is ready for clients") != std::string::npos) {
          unlink(config_.c_str());  // read at start-up; nothing to leave behind if killed
          config_.clear();
          // Keep draining RouDi's output so it never blocks on a full pipe.
          drainer_ = std::thread([fd = fd_] {
            char b[4096];
            while (read(fd, b, sizeof b) > 0) {
            }
          });
          return "";
        }
      }
    }
    Stop();
    // Terminal colour codes (ESC [ ... m) and newlines make a poor error record.
    std::string plain;
    for (size_t i = 0; i < seen.size(); ++i) {
      if (seen[i] == '\x1b') {
        while (i < seen.size() && seen[i] != 'm') ++i;
        continue;
      }
      plain += seen[i] == '\n' ? ' ' : seen[i];
    }
    seen = plain;
    if (seen.size() > 300) seen = "..." + seen.substr(seen.size() - 300);
    return "iox-roudi did not become ready: " + seen;
  }

  void Stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      bool gone = false;
      for (int i = 0; i < 1000 && !gone; ++i) {  // 10 s
        gone = waitpid(pid_, &status, WNOHANG) == pid_;
        if (!gone) usleep(10000);
      }
      if (!gone) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
      }
      pid_ = -1;
      // A RouDi that did not shut down cleanly leaves its segments (iceoryx 2.0.3's RouDi
      // aborts on SIGTERM after a run with several subscriber processes: ~330 MB left in
      // /dev/shm per run). They are the ones RouDi itself removes on start-up: the
      // management segment and the one named after the user.
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) RemoveRoudiSegments(status);
    }
    if (drainer_.joinable()) drainer_.join();  // EOF once RouDi is gone
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    if (!config_.empty()) unlink(config_.c_str());
    config_.clear();
  }
  ~Roudi() { Stop(); }

 private:
  static void RemoveRoudiSegments(int status) {
    const passwd* pw = getpwuid(geteuid());
    const std::string user = pw != nullptr ? pw->pw_name : "";
    std::string removed;
    for (const std::string& name : {std::string("/iceoryx_mgmt"), "/" + user}) {
      if (name.size() > 1 && shm_unlink(name.c_str()) == 0) removed += " " + name;
    }
    std::fprintf(stderr, "  iox-roudi ended with status 0x%x; removed its segments:%s\n", status,
                 removed.empty() ? " none" : removed.c_str());
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  std::thread drainer_;
  std::string config_;
};

iox::capro::IdString_t Id(const std::string& s) {
  return iox::capro::IdString_t(iox::cxx::TruncateToCapacity, s.c_str());
}

class IceoryxEndpoint final : public Endpoint {
 public:
  IceoryxEndpoint(const std::string& instance, const std::string& rx_event,
                  const std::string& tx_event, uint64_t size, bool waitset) {
    if (!rx_event.empty()) {
      iox::popo::SubscriberOptions so;
      so.queueCapacity = QueueDepth(size);
      so.queueFullPolicy = iox::popo::QueueFullPolicy::BLOCK_PRODUCER;
      sub_ = std::make_unique<iox::popo::UntypedSubscriber>(
          iox::capro::ServiceDescription{Id("shmlink-compare"), Id(instance), Id(rx_event)}, so);
      if (waitset) {
        ws_ = std::make_unique<iox::popo::WaitSet<>>();
        if (ws_->attachState(*sub_, iox::popo::SubscriberState::HAS_DATA).has_error()) {
          ws_.reset();
          attach_failed_ = true;
        }
      }
    }
    if (!tx_event.empty()) {
      iox::popo::PublisherOptions po;
      po.subscriberTooSlowPolicy = iox::popo::ConsumerTooSlowPolicy::WAIT_FOR_CONSUMER;
      pub_ = std::make_unique<iox::popo::UntypedPublisher>(
          iox::capro::ServiceDescription{Id("shmlink-compare"), Id(instance), Id(tx_event)}, po);
    }
  }

  // Waits (up to 10 s) until the publisher is connected and the subscriber subscribed.
  bool WaitConnected(std::string* err) {
    if (attach_failed_) {
      *err = "WaitSet::attachState failed";
      return false;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      const bool pub_ok = !pub_ || pub_->hasSubscribers();
      const bool sub_ok = !sub_ || sub_->getSubscriptionState() == iox::SubscribeState::SUBSCRIBED;
      if (pub_ok && sub_ok) return true;
      usleep(1000);
    }
    *err = "iceoryx ports did not connect within 10 s";
    return false;
  }

  bool Send(const std::byte* p, size_t n, std::string* err) override {
    for (int attempt = 0;; ++attempt) {
      auto chunk = pub_->loan(static_cast<uint32_t>(n));
      if (!chunk.has_error()) {
        std::memcpy(chunk.value(), p, n);
        pub_->publish(chunk.value());
        return true;
      }
      if (attempt > 1000000) {
        *err = "iceoryx loan() kept failing (mempool exhausted)";
        return false;
      }
    }
  }

  bool Recv(size_t n, uint64_t* tag, std::string* err) override {
    for (;;) {
      auto r = sub_->take();
      if (!r.has_error()) {
        const void* payload = r.value();
        std::memcpy(tag, payload, sizeof *tag);
        // Read the whole message in place, as the shmlink consumer does.
        sink_ = sink_ + TouchBytes(static_cast<const std::byte*>(payload), n);
        sub_->release(payload);
        return true;
      }
      if (r.get_error() != iox::popo::ChunkReceiveResult::NO_CHUNK_AVAILABLE) {
        *err = "iceoryx take() failed (too many chunks held)";
        return false;
      }
      if (ws_) (void)ws_->wait();  // sleeps until the subscriber has data
    }
  }

 private:
  std::unique_ptr<iox::popo::UntypedSubscriber> sub_;
  std::unique_ptr<iox::popo::UntypedPublisher> pub_;
  std::unique_ptr<iox::popo::WaitSet<>> ws_;  // declared after sub_: detaches first
  bool attach_failed_ = false;
  volatile uint64_t sink_ = 0;  // keeps the reads of TouchBytes
};

// ---- Publish/subscribe with N subscribers (RunIceoryxPubsubCases) ----------------------------

constexpr int kMaxSubs = 8;

struct PubsubShared {
  alignas(64) std::atomic<uint32_t> arrived{0};
  alignas(64) std::atomic<uint32_t> finished{0};
  alignas(64) std::atomic<uint32_t> stop{0};
  alignas(64) std::atomic<uint32_t> samples{0};
  struct Sub {
    std::atomic<uint64_t> count{0};
    std::atomic<uint64_t> window_ns{1};
  } sub[kMaxSubs];
  static constexpr size_t kMaxSamples = 1 << 20;
  uint64_t sample[kMaxSamples];  // RTT samples of the publisher process
};

// SYNC(barrier): seq_cst; every process's set-up happens-before the timed loops.
void ArriveAll(PubsubShared* sh, uint32_t parties) {
  sh->arrived.fetch_add(1, std::memory_order_seq_cst);
  while (sh->arrived.load(std::memory_order_seq_cst) < parties) std::this_thread::yield();
}

void InitRuntime(const std::string& name) {
  iox::log::LogManager::GetLogManager().SetDefaultLogLevel(iox::log::LogLevel::kWarn,
                                                           iox::log::LogLevelOutput::kHideLogLevel);
  iox::runtime::PoshRuntime::initRuntime(
      iox::RuntimeName_t(iox::cxx::TruncateToCapacity, name.c_str()));
}

std::unique_ptr<iox::popo::UntypedSubscriber> MakeSubscriber(const std::string& instance,
                                                             const char* event, uint64_t size) {
  iox::popo::SubscriberOptions so;
  so.queueCapacity = QueueDepth(size);
  so.queueFullPolicy = iox::popo::QueueFullPolicy::BLOCK_PRODUCER;
  return std::make_unique<iox::popo::UntypedSubscriber>(
      iox::capro::ServiceDescription{Id("shmlink-compare"), Id(instance), Id(event)}, so);
}

std::unique_ptr<iox::popo::UntypedPublisher> MakePublisher(const std::string& instance,
                                                           const char* event) {
  iox::popo::PublisherOptions po;
  po.subscriberTooSlowPolicy = iox::popo::ConsumerTooSlowPolicy::WAIT_FOR_CONSUMER;
  return std::make_unique<iox::popo::UntypedPublisher>(
      iox::capro::ServiceDescription{Id("shmlink-compare"), Id(instance), Id(event)}, po);
}

bool WaitSubscribed(iox::popo::UntypedSubscriber& sub) {
  for (int i = 0; i < 10000; ++i) {
    if (sub.getSubscriptionState() == iox::SubscribeState::SUBSCRIBED) return true;
    usleep(1000);
  }
  return false;
}

// Takes one chunk (busy-poll, or sleeping in `ws` when empty); nullptr on error.
const void* Take(iox::popo::UntypedSubscriber& sub, iox::popo::WaitSet<>* ws) {
  for (;;) {
    auto r = sub.take();
    if (!r.has_error()) return r.value();
    if (r.get_error() != iox::popo::ChunkReceiveResult::NO_CHUNK_AVAILABLE) return nullptr;
    if (ws != nullptr) (void)ws->wait();
  }
}

// One repetition: N subscriber processes and one publisher process (each its own runtime).
// rtt: subscriber 0 echoes the first 8 bytes on event "echo". Returns "" or an error.
std::string IceoryxPubsubRep(const BenchConfig& cfg, uint64_t size, int n, bool waitset, bool rtt,
                             double* slowest, std::vector<uint64_t>* samples) {
  static int serial = 0;
  const std::string instance = "ps-" + std::to_string(getpid()) + "-" + std::to_string(serial++);
  void* mem = mmap(nullptr, sizeof(PubsubShared), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return "mmap failed";
  auto* sh = new (mem) PubsubShared();
  std::vector<pid_t> pids;
  std::vector<std::string> names;
  std::fflush(nullptr);
  for (int i = 0; i <= n; ++i) {  // i < n: subscriber i; i == n: the publisher
    const std::string name = "shmlink-compare-" + instance + "-" + std::to_string(i);
    names.push_back(name);
    const pid_t pid = fork();
    if (pid != 0) {
      pids.push_back(pid);
      continue;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    InitRuntime(name);
    if (i < n) {
      PinToCpu(i % 2 == 0 ? cfg.cpu_b : cfg.cpu_a);
      auto sub = MakeSubscriber(instance, "data", size);
      std::unique_ptr<iox::popo::UntypedPublisher> echo;
      if (rtt && i == 0) echo = MakePublisher(instance, "echo");
      std::unique_ptr<iox::popo::WaitSet<>> ws;
      if (waitset) {
        ws = std::make_unique<iox::popo::WaitSet<>>();
        if (ws->attachState(*sub, iox::popo::SubscriberState::HAS_DATA).has_error()) _exit(2);
      }
      if (!WaitSubscribed(*sub)) _exit(3);
      ArriveAll(sh, n + 1);
      ThroughputWindow window(cfg, size >= 4096 ? 1 : 256);
      uint64_t count = 0;
      volatile uint64_t sink = 0;
      bool done = rtt;
      while (sh->stop.load(std::memory_order_acquire) == 0) {
        auto r = sub->take();
        if (r.has_error()) {
          if (r.get_error() != iox::popo::ChunkReceiveResult::NO_CHUNK_AVAILABLE) _exit(4);
          if (ws) (void)ws->timedWait(iox::units::Duration::fromMilliseconds(10));
          continue;
        }
        const void* payload = r.value();
        sink = sink + TouchBytes(static_cast<const std::byte*>(payload), size);
        uint64_t tag = 0;
        std::memcpy(&tag, payload, std::min<uint64_t>(8, size));
        sub->release(payload);
        if (echo) {
          for (;;) {
            auto c = echo->loan(8);
            if (c.has_error()) continue;
            std::memcpy(c.value(), &tag, 8);
            echo->publish(c.value());
            break;
          }
        }
        if (done) continue;
        if (window.measuring()) ++count;
        if (window.Tick()) {
          sh->sub[i].count.store(count, std::memory_order_relaxed);
          sh->sub[i].window_ns.store(window.elapsed_ns(), std::memory_order_relaxed);
          sh->finished.fetch_add(1, std::memory_order_seq_cst);
          done = true;
        }
      }
      sub.reset();
      echo.reset();
      _exit(0);
    }
    // The publisher.
    PinToCpu(cfg.cpu_a);
    auto pub = MakePublisher(instance, "data");
    std::unique_ptr<iox::popo::UntypedSubscriber> back;
    if (rtt) {
      back = MakeSubscriber(instance, "echo", 8);
      if (!WaitSubscribed(*back)) _exit(3);
    }
    for (int k = 0; k < 10000 && !pub->hasSubscribers(); ++k) usleep(1000);
    // All N must be connected before the first message (hasSubscribers says one is).
    usleep(20000);
    const std::vector<std::byte> src = PatternBuffer(std::max<uint64_t>(size, 8));
    ArriveAll(sh, n + 1);
    auto publish = [&](uint64_t seq) {
      for (;;) {
        auto chunk = pub->loan(static_cast<uint32_t>(size));
        if (chunk.has_error()) continue;
        std::memcpy(chunk.value(), src.data(), size);
        if (size >= 8) std::memcpy(chunk.value(), &seq, 8);
        pub->publish(chunk.value());
        return;
      }
    };
    if (rtt) {
      std::vector<uint64_t> local;
      local.reserve(1 << 20);
      const int rc = TimeRoundTrips(cfg, &local, [&](uint64_t seq) {
        publish(seq);
        const void* r = Take(*back, nullptr);
        if (r == nullptr) return 4;
        uint64_t tag = 0;
        std::memcpy(&tag, r, 8);
        back->release(r);
        return size >= 8 && tag != seq ? 5 : 0;
      });
      const size_t m = std::min(local.size(), PubsubShared::kMaxSamples);
      std::copy(local.begin(), local.begin() + static_cast<long>(m), sh->sample);
      sh->samples.store(static_cast<uint32_t>(m), std::memory_order_release);
      sh->stop.store(1, std::memory_order_release);
      _exit(rc);
    }
    for (uint64_t k = 0;; ++k) {
      if ((k & 63) == 0 &&
          sh->finished.load(std::memory_order_seq_cst) == static_cast<uint32_t>(n)) {
        break;
      }
      publish(k);
    }
    sh->stop.store(1, std::memory_order_release);
    pub.reset();
    _exit(0);
  }
  std::string err;
  for (pid_t pid : pids) {
    int status = 0;
    for (int t = 0; t < 6000 && waitpid(pid, &status, WNOHANG) != pid; ++t) usleep(10000);
    if (kill(pid, 0) == 0 && waitpid(pid, &status, WNOHANG) == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      err = "an iceoryx process did not finish within 60 s";
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      err = "an iceoryx process failed (status " + std::to_string(status) + ")";
    }
  }
  for (const auto& nm : names) {  // left behind only by a killed runtime
    unlink(("/tmp/" + nm).c_str());
    unlink(("/tmp/" + nm + ".lock").c_str());
  }
  if (err.empty()) {
    if (rtt) {
      samples->assign(sh->sample, sh->sample + sh->samples.load(std::memory_order_acquire));
    } else {
      for (int i = 0; i < n; ++i) {
        const double rate = static_cast<double>(sh->sub[i].count.load()) * 1e9 /
                            static_cast<double>(sh->sub[i].window_ns.load());
        *slowest = i == 0 ? rate : std::min(*slowest, rate);
      }
    }
  }
  munmap(mem, sizeof(PubsubShared));
  return err;
}

}  // namespace

void RunIceoryxPubsubCases(const BenchConfig& cfg, const Emit& emit) {
  Roudi roudi;
  Progress("  starting iox-roudi (pub/sub, 4 subscribers) ...");
  const std::string start_error = roudi.Start(cfg.sizes, 2 * 4 + 2);
  for (const bool waitset : {false, true}) {
    const std::string system = waitset ? "iceoryx:waitset" : "iceoryx";
    const std::string how =
        waitset ? "subscribers sleep in a WaitSet when empty" : "subscribers busy-poll take()";
    for (int n : {1, 2, 4}) {
      for (uint64_t size : cfg.sizes) {
        BenchRecord rec = ThroughputRecord(system, size);
        rec.producers.reset();
        rec.consumers.reset();
        rec.subscribers = n;
        if (!start_error.empty()) {
          rec.error = start_error;
        } else {
          RunThroughputReps(
              cfg,
              [&](ThroughputFigures* out) {
                double slowest = 0;
                std::string e = IceoryxPubsubRep(cfg, size, n, waitset, false, &slowest, nullptr);
                if (e.empty() && slowest <= 0) e = "no messages in the measured window";
                out->msgs_per_s = slowest;
                out->bytes_per_s = slowest * static_cast<double>(size);
                return e;
              },
              how + "; iceoryx 2.0.3 loan+memcpy+publish, lossless policies; slowest of " +
                  std::to_string(n),
              rec);
        }
        emit(rec);
      }
      for (uint64_t size : cfg.sizes) {
        BenchRecord rec = RttRecord(system, size);
        rec.subscribers = n;
        if (!start_error.empty()) {
          rec.error = start_error;
        } else {
          RunRttReps(
              cfg,
              [&](std::vector<uint64_t>* samples) {
                double unused = 0;
                std::string e = IceoryxPubsubRep(cfg, size, n, waitset, true, &unused, samples);
                if (e.empty() && samples->empty()) e = "no round trips in the measured window";
                return e;
              },
              how + "; subscriber 0 echoes on a second iceoryx topic", rec);
        }
        emit(rec);
      }
    }
  }
  Progress("  stopping iox-roudi ...");
  roudi.Stop();
}

void RunIceoryxCases(const BenchConfig& cfg, const Emit& emit) {
  Roudi roudi;
  Progress("  starting iox-roudi ...");
  const std::string start_error = roudi.Start(cfg.sizes);
  static int serial = 0;
  for (const bool waitset : {false, true}) {
    RunPeerFamily(
        cfg, waitset ? "iceoryx:waitset" : "iceoryx",
        waitset
            ? "iceoryx 2.0.3 UntypedPublisher loan+memcpy+publish / UntypedSubscriber take, "
              "sleeping in a WaitSet when empty (read in place), lossless queue policies"
            : "iceoryx 2.0.3 UntypedPublisher loan+memcpy+publish / UntypedSubscriber busy-poll "
              "take (read in place), lossless queue policies",
        [&](PeerCase* c) -> std::string {
          if (!start_error.empty()) return start_error;
          const std::string instance =
              "case-" + std::to_string(getpid()) + "-" + std::to_string(serial++);
          const bool rtt = c->pattern == Pattern::kRtt;
          // Runtime names also name the runtime's socket and lock files in /tmp.
          const std::string name_a = "shmlink-compare-" + instance + "-a";
          const std::string name_b = "shmlink-compare-" + instance + "-b";
          c->exit_normally = true;  // the runtime deregisters from RouDi at exit
          c->make = [=](Side side, Pattern, size_t size,
                        std::string* err) -> std::unique_ptr<Endpoint> {
            const std::string& name = side == Side::kA ? name_a : name_b;
            // Keep the runtime's per-process debug chatter out of the progress output.
            iox::log::LogManager::GetLogManager().SetDefaultLogLevel(
                iox::log::LogLevel::kWarn, iox::log::LogLevelOutput::kHideLogLevel);
            iox::runtime::PoshRuntime::initRuntime(
                iox::RuntimeName_t(iox::cxx::TruncateToCapacity, name.c_str()));
            // Throughput: B publishes "ba", A subscribes. RTT adds "ab" the other way.
            std::unique_ptr<IceoryxEndpoint> ep;
            if (side == Side::kA) {
              ep =
                  std::make_unique<IceoryxEndpoint>(instance, "ba", rtt ? "ab" : "", size, waitset);
            } else {
              ep =
                  std::make_unique<IceoryxEndpoint>(instance, rtt ? "ab" : "", "ba", size, waitset);
            }
            if (!ep->WaitConnected(err)) return nullptr;
            return ep;
          };
          c->cleanup = [=] {  // only left behind by a child that failed or was killed
            for (const auto& n : {name_a, name_b}) {
              unlink(("/tmp/" + n).c_str());
              unlink(("/tmp/" + n + ".lock").c_str());
            }
          };
          return "";
        },
        emit);
  }
  Progress("  stopping iox-roudi ...");
  roudi.Stop();
}

}  // namespace shmlink::bench
