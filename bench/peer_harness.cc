// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "bench/peer_harness.h"

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "bench/fd_io.h"
#include "bench/harness.h"

namespace shmlink::bench {
namespace {

constexpr int kMaxReps = 64;
constexpr uint64_t kEndTag = ~uint64_t{0};          // ends one repetition
constexpr size_t kMaxRttSamples = size_t{2} << 20;  // per repetition

// Results and errors of one case, shared by the supervising process and every process of
// every repetition (MAP_SHARED | MAP_ANONYMOUS, created before the first fork). Each slot
// has a single writer, and the supervisor reads it only after that writer's process has
// exited (waitpid orders the accesses), so plain fields suffice.
struct CaseResults {
  double fig[kMaxReps][3] = {};  // throughput: msgs/s; rtt: p50, p99, p99.9 (ns)
  int reps_done = 0;
  char error[2][256] = {};  // [0]: side A, [1]: side B
  // SYNC(failed): a side that fails sets it (release); the supervisor polls it (acquire)
  // to cut the wait short when the other side may now block forever.
  std::atomic<int> failed{0};
};

void SetError(CaseResults* res, Side side, const std::string& what) {
  char* dst = res->error[side == Side::kA ? 0 : 1];
  std::snprintf(dst, sizeof res->error[0], "%s", what.c_str());
  res->failed.store(1, std::memory_order_release);
}

// Side A of a throughput repetition: receive and verify sequence numbers; warm up, count
// for the measured window, ask B to stop, drain to B's end tag.
std::string ThroughputReceiver(const BenchConfig& cfg, size_t size, Endpoint* ep, PairSync& sync,
                               double* msgs_per_s) {
  std::string err;
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
  const uint64_t warm_end = NowNs() + WarmupNs(cfg);
  while (NowNs() < warm_end) {
    if (!recv_one()) return err;
  }
  const uint64_t window = MeasureNs(cfg);
  uint64_t count = 0;
  const uint64_t t0 = NowNs();
  uint64_t t1 = t0;
  for (;;) {
    if (!recv_one()) return err;
    ++count;
    if ((count & 7) == 0) {
      t1 = NowNs();
      if (t1 - t0 >= window) break;
    }
  }
  *msgs_per_s = static_cast<double>(count) * 1e9 / static_cast<double>(t1 - t0);
  sync.RequestStop();
  for (;;) {  // drain what B sent before it saw the stop flag
    if (!ep->Recv(size, &tag, &err)) return err;
    if (tag == kEndTag) return "";
    if (tag != expect++) return "sequence broken while draining";
  }
}

// Side B of a throughput repetition: send numbered messages until A asks to stop.
std::string ThroughputSender(size_t size, Endpoint* ep, PairSync& sync) {
  std::string err;
  std::vector<std::byte> buf = PatternBuffer(size);
  for (uint64_t seq = 0; !sync.StopRequested(); ++seq) {
    std::memcpy(buf.data(), &seq, sizeof seq);
    if (!ep->Send(buf.data(), size, &err)) return err;
  }
  std::memcpy(buf.data(), &kEndTag, sizeof kEndTag);
  return ep->Send(buf.data(), size, &err) ? "" : err;
}

// Side A of an RTT repetition: time every exchange of the measured window.
std::string RttPinger(const BenchConfig& cfg, size_t size, Endpoint* ep, RttStats* stats) {
  std::string err;
  std::vector<std::byte> buf = PatternBuffer(size);
  std::vector<uint64_t> samples;
  samples.reserve(kMaxRttSamples);
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
  const uint64_t warm_end = NowNs() + WarmupNs(cfg);
  while (NowNs() < warm_end) {
    if (!exchange()) return err;
  }
  const uint64_t end = NowNs() + MeasureNs(cfg);
  for (;;) {
    const uint64_t s = NowNs();
    if (!exchange()) return err;
    const uint64_t e = NowNs();
    samples.push_back(e - s);
    if (e >= end || samples.size() >= kMaxRttSamples) break;
  }
  *stats = SummarizeRtt(std::move(samples));
  std::memcpy(buf.data(), &kEndTag, sizeof kEndTag);
  return ep->Send(buf.data(), size, &err) ? "" : err;
}

// Side B of an RTT repetition: echo every message (same size, same tag) until the end tag.
std::string RttEchoer(size_t size, Endpoint* ep) {
  std::string err;
  std::vector<std::byte> buf = PatternBuffer(size);
  uint64_t tag = 0;
  for (;;) {
    if (!ep->Recv(size, &tag, &err)) return err;
    if (tag == kEndTag) return "";
    std::memcpy(buf.data(), &tag, sizeof tag);
    if (!ep->Send(buf.data(), size, &err)) return err;
  }
}

// Leaves a process of the case: exit() when the system's runtime must deregister.
[[noreturn]] void Leave(const PeerCase& c, int rc) {
  std::fflush(nullptr);
  if (c.exit_normally) std::exit(rc);
  _exit(rc);
}

// One side of one repetition, in its own pinned process (RunPinnedPair did the pinning).
int RunSide(const BenchConfig& cfg, const PeerCase& c, Side side, PairSync& sync, CaseResults* res,
            int rep) {
  if (side == Side::kB) prctl(PR_SET_PDEATHSIG, SIGKILL);  // B ends with S
  std::string err;
  std::unique_ptr<Endpoint> ep = c.make(side, c.pattern, c.size, &err);
  if (!ep) {
    SetError(res, side, err.empty() ? "could not build the endpoint" : err);
    return 1;
  }
  sync.ArriveAndWait();
  if (c.pattern == Pattern::kThroughput) {
    err = side == Side::kA ? ThroughputReceiver(cfg, c.size, ep.get(), sync, &res->fig[rep][0])
                           : ThroughputSender(c.size, ep.get(), sync);
  } else if (side == Side::kA) {
    RttStats st;
    err = RttPinger(cfg, c.size, ep.get(), &st);
    res->fig[rep][0] = st.p50;
    res->fig[rep][1] = st.p99;
    res->fig[rep][2] = st.p999;
    if (err.empty() && st.samples == 0) err = "no round trips in the measured window";
  } else {
    err = RttEchoer(c.size, ep.get());
  }
  ep.reset();  // orderly teardown (e.g. iceoryx ports go back to RouDi)
  if (!err.empty()) {
    SetError(res, side, err);
    return 1;
  }
  if (side == Side::kB) Leave(c, 0);  // B's process ends here (RunPinnedPair would _exit)
  return 0;
}

// Runs repetition `rep` in a fresh supervisor process S that calls RunPinnedPair (S becomes
// side A on cfg.cpu_a, its child side B on cfg.cpu_b), so no per-process state of the system
// survives from one repetition to the next and neither touches this process. Kills the
// pair after `budget_s` (or 2 s after one side reported a failure). Returns "" or why not.
std::string RunRep(const BenchConfig& cfg, const PeerCase& c, CaseResults* res, int rep,
                   double budget_s) {
  std::fflush(nullptr);  // children must not inherit unflushed stdio buffers
  const pid_t s = fork();
  if (s < 0) return std::string("fork: ") + std::strerror(errno);
  if (s == 0) {
    setpgid(0, 0);                     // S and B form one process group: one killpg ends both
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // S ends with the benchmark (e.g. on Ctrl-C)
    const std::string e = RunPinnedPair(
        cfg, [&](PairSync& sync) { return RunSide(cfg, c, Side::kA, sync, res, rep); },
        [&](PairSync& sync) { return RunSide(cfg, c, Side::kB, sync, res, rep); });
    if (!e.empty() && !res->error[0][0] && !res->error[1][0]) SetError(res, Side::kA, e);
    Leave(c, e.empty() ? 0 : 1);
  }
  setpgid(s, s);  // also here, so killpg works even before S ran
  uint64_t deadline = NowNs() + static_cast<uint64_t>(budget_s * 1e9);
  bool failed_seen = false, timed_out = false;
  int status = 0;
  for (;;) {
    // Notice S's exit without reaping it: while S is an unreaped zombie its process group
    // id cannot be reused, so the killpg below can only reach S's own group (a B left
    // behind if S died abruptly).
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(s), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == s) {
      break;
    }
    if (!failed_seen && res->failed.load(std::memory_order_acquire)) {
      failed_seen = true;  // the other side may now block forever
      deadline = std::min<uint64_t>(deadline, NowNs() + 2'000'000'000ull);
    }
    if (NowNs() > deadline) {
      timed_out = !failed_seen;
      break;
    }
    usleep(2000);
  }
  killpg(s, SIGKILL);  // ends B (and S, on a deadline); S is not reaped yet
  waitpid(s, &status, 0);
  std::string err;
  for (int i = 0; i < 2; ++i) {
    if (res->error[i][0]) {
      err += std::string(err.empty() ? "" : "; ") + (i == 0 ? "A: " : "B: ") + res->error[i];
    }
  }
  if (timed_out) {
    err = "timed out after " + std::to_string(static_cast<int>(budget_s)) + " s" +
          (err.empty() ? "" : " (" + err + ")");
  }
  if (err.empty() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    err = "side A's process ended with status " + std::to_string(status);
  }
  return err;
}

class FdEndpoint final : public Endpoint {
 public:
  FdEndpoint(int rfd, int wfd) : rfd_(rfd), wfd_(wfd) {}
  ~FdEndpoint() override {
    if (rfd_ >= 0) close(rfd_);
    if (wfd_ >= 0 && wfd_ != rfd_) close(wfd_);
  }
  bool Send(const std::byte* p, size_t n, std::string* err) override {
    if (WriteAll(wfd_, p, n)) return true;
    *err = std::string("write: ") + std::strerror(errno);
    return false;
  }
  bool Recv(size_t n, uint64_t* tag, std::string* err) override {
    if (buf_.size() < n) buf_.resize(n);
    const ssize_t got = ReadAll(rfd_, buf_.data(), n);
    if (got < 0) {
      *err = std::string("read: ") + std::strerror(errno);
      return false;
    }
    if (static_cast<size_t>(got) != n) {
      *err = "read: unexpected end of stream";
      return false;
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
      mmap(nullptr, sizeof(CaseResults), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    rec.error = std::string("mmap: ") + std::strerror(errno);
    return rec;
  }
  auto* res = new (mem) CaseResults();
  // Generous (a loaded machine, runtime start-up), but a hung peer cannot stall the run.
  const double budget =
      c.timeout_s > 0 ? c.timeout_s : (WarmupNs(cfg) + MeasureNs(cfg)) * 1e-9 * 4 + 20;
  for (int r = 0; r < reps && rec.error.empty(); ++r) {
    rec.error = RunRep(cfg, c, res, r, budget);
  }
  if (rec.error.empty()) {
    rec.reps = reps;
    if (c.pattern == Pattern::kThroughput) {
      RepSet msgs, bytes;
      for (int r = 0; r < reps; ++r) {
        msgs.Add(res->fig[r][0]);
        bytes.Add(res->fig[r][0] * static_cast<double>(c.size));
      }
      PutMedianWithSpread(rec, "msgs_per_s", msgs, &BenchRecord::msgs_per_s);
      PutMedianWithSpread(rec, "bytes_per_s", bytes, &BenchRecord::bytes_per_s);
    } else {
      RepSet p[3];
      for (int r = 0; r < reps; ++r) {
        for (int k = 0; k < 3; ++k) p[k].Add(res->fig[r][k]);
      }
      PutMedianWithSpread(rec, "p50_ns", p[0], &BenchRecord::p50_ns);
      PutMedianWithSpread(rec, "p99_ns", p[1], &BenchRecord::p99_ns);
      PutMedianWithSpread(rec, "p999_ns", p[2], &BenchRecord::p999_ns);
    }
    rec.note = c.note;
  }
  if (c.after_fork) c.after_fork();
  if (c.cleanup) c.cleanup();
  res->~CaseResults();
  munmap(mem, sizeof(CaseResults));
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
