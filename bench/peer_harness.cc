// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "bench/peer_harness.h"

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

namespace shmlink::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMaxReps = 64;
constexpr uint64_t kEndTag = ~uint64_t{0};          // ends one repetition
constexpr size_t kMaxRttSamples = size_t{2} << 20;  // per repetition

// One page shared by the parent and both children (MAP_SHARED | MAP_ANONYMOUS).
struct Shared {
  // SYNC(ready): start barrier; each child adds 1 (acq_rel) once its endpoint exists and
  // spins until it reads 2 (acquire), so neither side starts timing before the other is up.
  alignas(64) std::atomic<int> ready{0};
  // SYNC(go): A stores repetition r (release) before receiving; B waits for it (acquire)
  // before sending, so B never floods the channel while A is still reporting the last rep.
  alignas(64) std::atomic<int> go{0};
  // SYNC(stop): A stores r (release) when it has measured enough; B polls it (relaxed is
  // enough: it only ends a loop, and the end tag B then sends carries the ordering).
  alignas(64) std::atomic<int> stop{0};
  // SYNC(abort): a failing child sets it (release); waiting loops poll it (acquire) so the
  // other child gives up instead of spinning until the parent's deadline.
  alignas(64) std::atomic<int> abort{0};
  alignas(64) double fig[kMaxReps][3] = {};  // written by A before exit; read after waitpid
  int reps_done = 0;
  char error[2][256] = {};
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins until pred() or abort; yields after a while so a loaded machine still progresses.
template <class Pred>
bool SpinUntil(Shared* sh, Pred pred) {
  for (uint64_t i = 0;; ++i) {
    if (pred()) return true;
    if (sh->abort.load(std::memory_order_acquire)) return false;
    if (i > 4096) {
      sched_yield();
    } else {
      CpuRelax();
    }
  }
}

double WarmupSeconds(const BenchConfig& cfg) { return std::max(0.02, 0.2 * cfg.seconds_per_rep); }

// Child A for throughput: receives, counts, verifies sequence numbers.
std::string ThroughputReceiver(const BenchConfig& cfg, size_t size, Endpoint* ep, Shared* sh,
                               int reps) {
  std::string err;
  const auto warm = std::chrono::duration<double>(WarmupSeconds(cfg));
  const auto dur = std::chrono::duration<double>(cfg.seconds_per_rep);
  for (int r = 1; r <= reps; ++r) {
    sh->go.store(r, std::memory_order_release);
    uint64_t expect = 0, tag = 0;
    auto recv_one = [&]() -> bool {
      if (!ep->Recv(size, &tag, &err)) return false;
      if (tag != expect) {
        err = "message " + std::to_string(expect) + " arrived as tag " + std::to_string(tag) +
              " (lost, duplicated or reordered)";
        return false;
      }
      ++expect;
      return true;
    };
    const auto start = Clock::now();
    while (Clock::now() - start < warm) {
      if (!recv_one()) return err;
    }
    uint64_t count = 0;
    const auto t0 = Clock::now();
    auto t1 = t0;
    for (;;) {
      if (!recv_one()) return err;
      ++count;
      if ((count & 7) == 0) {
        t1 = Clock::now();
        if (t1 - t0 >= dur) break;
      }
    }
    sh->fig[r - 1][0] = static_cast<double>(count) / Seconds(t1 - t0);
    sh->stop.store(r, std::memory_order_release);
    for (;;) {  // drain what B sent before it saw `stop`, up to the end tag
      if (!ep->Recv(size, &tag, &err)) return err;
      if (tag == kEndTag) break;
      if (tag != expect++) return "sequence broken while draining";
    }
    sh->reps_done = r;
  }
  return "";
}

std::string ThroughputSender(size_t size, Endpoint* ep, Shared* sh, int reps) {
  std::string err;
  std::vector<std::byte> buf(size, std::byte{0x5a});
  for (int r = 1; r <= reps; ++r) {
    if (!SpinUntil(sh, [&] { return sh->go.load(std::memory_order_acquire) >= r; })) {
      return "peer aborted";
    }
    for (uint64_t seq = 0; sh->stop.load(std::memory_order_relaxed) < r; ++seq) {
      std::memcpy(buf.data(), &seq, sizeof seq);
      if (!ep->Send(buf.data(), size, &err)) return err;
    }
    std::memcpy(buf.data(), &kEndTag, sizeof kEndTag);
    if (!ep->Send(buf.data(), size, &err)) return err;
  }
  return "";
}

double Percentile(const std::vector<uint64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t i = static_cast<size_t>(q * static_cast<double>(sorted.size()));
  return static_cast<double>(sorted[std::min(i, sorted.size() - 1)]);
}

std::string RttPinger(const BenchConfig& cfg, size_t size, Endpoint* ep, Shared* sh, int reps) {
  std::string err;
  std::vector<std::byte> buf(size, std::byte{0xa5});
  std::vector<uint64_t> samples;
  samples.reserve(kMaxRttSamples);
  const auto warm = std::chrono::duration<double>(WarmupSeconds(cfg));
  const auto dur = std::chrono::duration<double>(cfg.seconds_per_rep);
  uint64_t k = 0, tag = 0;
  auto exchange = [&]() -> bool {
    std::memcpy(buf.data(), &k, sizeof k);
    if (!ep->Send(buf.data(), size, &err) || !ep->Recv(size, &tag, &err)) return false;
    if (tag != k) {
      err = "echo of " + std::to_string(k) + " came back as " + std::to_string(tag);
      return false;
    }
    ++k;
    return true;
  };
  for (int r = 1; r <= reps; ++r) {
    const auto start = Clock::now();
    while (Clock::now() - start < warm) {
      if (!exchange()) return err;
    }
    samples.clear();
    const auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(dur);
    for (;;) {
      const auto s = Clock::now();
      if (!exchange()) return err;
      const auto e = Clock::now();
      samples.push_back(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(e - s).count()));
      if (e >= end || samples.size() >= kMaxRttSamples) break;
    }
    std::sort(samples.begin(), samples.end());
    sh->fig[r - 1][0] = Percentile(samples, 0.50);
    sh->fig[r - 1][1] = Percentile(samples, 0.99);
    sh->fig[r - 1][2] = Percentile(samples, 0.999);
    std::memcpy(buf.data(), &kEndTag, sizeof kEndTag);
    if (!ep->Send(buf.data(), size, &err)) return err;
    sh->reps_done = r;
  }
  return "";
}

std::string RttEchoer(size_t size, Endpoint* ep, int reps) {
  std::string err;
  std::vector<std::byte> buf(size, std::byte{0x3c});
  uint64_t tag = 0;
  for (int r = 1; r <= reps; ++r) {
    for (;;) {
      if (!ep->Recv(size, &tag, &err)) return err;
      if (tag == kEndTag) break;
      std::memcpy(buf.data(), &tag, sizeof tag);
      if (!ep->Send(buf.data(), size, &err)) return err;
    }
  }
  return "";
}

[[noreturn]] void ChildMain(const BenchConfig& cfg, const PeerCase& c, Side side, Shared* sh,
                            int reps) {
  const int idx = side == Side::kA ? 0 : 1;
  PinToCpu(side == Side::kA ? cfg.cpu_a : cfg.cpu_b);
  std::string err;
  auto fail = [&](const std::string& what) {
    std::snprintf(sh->error[idx], sizeof sh->error[idx], "%s", what.c_str());
    sh->abort.store(1, std::memory_order_release);
    std::fflush(nullptr);
    _exit(1);
  };
  std::unique_ptr<Endpoint> ep = c.make(side, c.pattern, c.size, &err);
  if (!ep) fail(err.empty() ? "could not build the endpoint" : err);
  sh->ready.fetch_add(1, std::memory_order_acq_rel);
  if (!SpinUntil(sh, [&] { return sh->ready.load(std::memory_order_acquire) >= 2; })) {
    fail("peer aborted before the start barrier");
  }
  if (c.pattern == Pattern::kThroughput) {
    err = side == Side::kA ? ThroughputReceiver(cfg, c.size, ep.get(), sh, reps)
                           : ThroughputSender(c.size, ep.get(), sh, reps);
  } else {
    err = side == Side::kA ? RttPinger(cfg, c.size, ep.get(), sh, reps)
                           : RttEchoer(c.size, ep.get(), reps);
  }
  if (!err.empty()) fail(err);
  ep.reset();  // orderly teardown (e.g. iceoryx ports go back to RouDi)
  std::fflush(nullptr);
  if (c.exit_normally) std::exit(0);
  _exit(0);
}

void FillSpread(BenchRecord* rec, const char* name, std::vector<double> v, double scale = 1) {
  for (double& x : v) x *= scale;
  rec->extra[std::string(name) + "_min"] = *std::min_element(v.begin(), v.end());
  rec->extra[std::string(name) + "_max"] = *std::max_element(v.begin(), v.end());
}

class FdEndpoint final : public Endpoint {
 public:
  FdEndpoint(int rfd, int wfd) : rfd_(rfd), wfd_(wfd) {}
  ~FdEndpoint() override {
    if (rfd_ >= 0) close(rfd_);
    if (wfd_ >= 0 && wfd_ != rfd_) close(wfd_);
  }
  bool Send(const std::byte* p, size_t n, std::string* err) override {
    while (n > 0) {
      ssize_t w = write(wfd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        *err = std::string("write: ") + std::strerror(errno);
        return false;
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }
  bool Recv(size_t n, uint64_t* tag, std::string* err) override {
    if (buf_.size() < n) buf_.resize(n);
    size_t got = 0;
    while (got < n) {
      ssize_t r = read(rfd_, buf_.data() + got, n - got);
      if (r < 0) {
        if (errno == EINTR) continue;
        *err = std::string("read: ") + std::strerror(errno);
        return false;
      }
      if (r == 0) {
        *err = "read: unexpected end of stream";
        return false;
      }
      got += static_cast<size_t>(r);
    }
    std::memcpy(tag, buf_.data(), sizeof *tag);
    return true;
  }

 private:
  int rfd_, wfd_;
  std::vector<std::byte> buf_;
};

}  // namespace

std::unique_ptr<Endpoint> MakeFdEndpoint(int rfd, int wfd) {
  return std::make_unique<FdEndpoint>(rfd, wfd);
}

void Progress(const std::string& line) {
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

BenchRecord RunPeerCase(const BenchConfig& cfg, const PeerCase& c) {
  BenchRecord rec;
  rec.system = c.system;
  rec.pattern = c.pattern == Pattern::kThroughput ? "throughput" : "rtt";
  rec.size = c.size;
  const int reps = std::clamp(cfg.reps, 1, kMaxReps);
  if (c.size < sizeof(uint64_t)) {
    rec.error = "message size below 8 bytes is not supported by the peer harness";
    return rec;
  }
  void* mem =
      mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    rec.error = std::string("mmap: ") + std::strerror(errno);
    return rec;
  }
  auto* sh = new (mem) Shared();
  std::fflush(nullptr);  // children must not inherit unflushed stdio buffers
  pid_t pids[2] = {-1, -1};
  for (int i = 0; i < 2; ++i) {
    pids[i] = fork();
    if (pids[i] == 0) ChildMain(cfg, c, i == 0 ? Side::kA : Side::kB, sh, reps);
    if (pids[i] < 0) {
      rec.error = std::string("fork: ") + std::strerror(errno);
      if (i == 1) kill(pids[0], SIGKILL);
      break;
    }
  }
  if (c.after_fork) c.after_fork();
  // Deadline: generous (a loaded machine, runtime start-up), but a hung peer cannot stall
  // the whole comparison.
  const double budget = reps * (WarmupSeconds(cfg) + cfg.seconds_per_rep) * 3 + 30;
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(budget));
  int status[2] = {0, 0};
  bool done[2] = {pids[0] < 0, pids[1] < 0};
  bool timed_out = false, killed = false;
  while (!done[0] || !done[1]) {
    for (int i = 0; i < 2; ++i) {
      if (done[i]) continue;
      pid_t w = waitpid(pids[i], &status[i], WNOHANG);
      if (w == pids[i]) {
        done[i] = true;
        const bool ok = WIFEXITED(status[i]) && WEXITSTATUS(status[i]) == 0;
        if (!ok && !done[1 - i] && !killed) {  // one side failed: the other may block forever
          kill(pids[1 - i], SIGKILL);
          killed = true;
        }
      }
    }
    if (done[0] && done[1]) break;
    if (!timed_out && Clock::now() > deadline) {
      timed_out = true;
      for (int i = 0; i < 2; ++i) {
        if (!done[i]) kill(pids[i], SIGKILL);
      }
    }
    usleep(2000);
  }
  if (rec.error.empty()) {
    std::string err;
    for (int i = 0; i < 2; ++i) {
      if (sh->error[i][0]) {
        err += std::string(err.empty() ? "" : "; ") + (i == 0 ? "A: " : "B: ") + sh->error[i];
      }
    }
    if (timed_out)
      err = "timed out after " + std::to_string(static_cast<int>(budget)) + " s" +
            (err.empty() ? "" : " (" + err + ")");
    for (int i = 0; i < 2 && err.empty(); ++i) {
      if (!(WIFEXITED(status[i]) && WEXITSTATUS(status[i]) == 0)) {
        err = std::string(i == 0 ? "A" : "B") + " died (status " + std::to_string(status[i]) + ")";
      }
    }
    if (err.empty() && sh->reps_done != reps) err = "not all repetitions completed";
    rec.error = err;
  }
  if (rec.error.empty()) {
    rec.reps = reps;
    if (c.pattern == Pattern::kThroughput) {
      std::vector<double> m;
      for (int r = 0; r < reps; ++r) m.push_back(sh->fig[r][0]);
      rec.msgs_per_s = Median(m);
      rec.bytes_per_s = *rec.msgs_per_s * static_cast<double>(c.size);
      FillSpread(&rec, "msgs_per_s", m);
      FillSpread(&rec, "bytes_per_s", m, static_cast<double>(c.size));
    } else {
      std::vector<double> p[3];
      for (int r = 0; r < reps; ++r) {
        for (int k = 0; k < 3; ++k) p[k].push_back(sh->fig[r][k]);
      }
      rec.p50_ns = Median(p[0]);
      rec.p99_ns = Median(p[1]);
      rec.p999_ns = Median(p[2]);
      FillSpread(&rec, "p50_ns", p[0]);
      FillSpread(&rec, "p99_ns", p[1]);
      FillSpread(&rec, "p999_ns", p[2]);
    }
    rec.note = c.note;
  }
  if (c.cleanup) c.cleanup();
  sh->~Shared();
  munmap(mem, sizeof(Shared));
  return rec;
}

void RunPeerFamily(const BenchConfig& cfg, const std::string& system, const std::string& note,
                   const std::function<std::string(PeerCase*)>& prepare, const Emit& emit) {
  for (Pattern pattern : {Pattern::kThroughput, Pattern::kRtt}) {
    for (uint64_t size : cfg.sizes) {
      PeerCase c;
      c.system = system;
      c.pattern = pattern;
      c.size = size;
      c.note = note;
      const char* pname = pattern == Pattern::kThroughput ? "throughput" : "rtt";
      Progress("  running " + system + " " + pname + " " + std::to_string(size) + " B ...");
      std::string err = prepare(&c);
      BenchRecord rec;
      if (!err.empty()) {
        rec.system = system;
        rec.pattern = pname;
        rec.size = size;
        rec.error = err;
      } else {
        rec = RunPeerCase(cfg, c);
      }
      emit(rec);
    }
  }
}

}  // namespace shmlink::bench
