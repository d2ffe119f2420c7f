// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "bench/harness.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <new>
#include <thread>

namespace shmlink::bench {

uint64_t NowNs() noexcept {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

void PairSync::ArriveAndWait() noexcept {
  arrived.fetch_add(1, std::memory_order_seq_cst);
  while (arrived.load(std::memory_order_acquire) < 2) CpuRelax();
}

std::string RunPinnedPair(const BenchConfig& cfg, const std::function<int(PairSync&)>& parent,
                          const std::function<int(PairSync&)>& child) {
  void* mem =
      ::mmap(nullptr, sizeof(PairSync), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return "mmap of the sync block failed";
  auto* sync = new (mem) PairSync();
  PinToCpu(cfg.cpu_a);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::munmap(mem, sizeof(PairSync));
    return "fork failed";
  }
  if (pid == 0) {
    PinToCpu(cfg.cpu_b);
    ::alarm(120);  // never outlive a hung parent by long
    int rc = 1;
    try {
      rc = child(*sync);
    } catch (...) {
      rc = 99;
    }
    ::_exit(rc);
  }
  int prc = 1;
  try {
    prc = parent(*sync);
  } catch (...) {
    prc = 99;
  }
  sync->RequestStop();
  int status = 0;
  const uint64_t deadline = NowNs() + 10'000'000'000ull;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) break;
    if (NowNs() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ::munmap(mem, sizeof(PairSync));
  std::string err;
  if (prc != 0) err = "parent side failed (code " + std::to_string(prc) + ")";
  if (WIFSIGNALED(status)) {
    err += (err.empty() ? "" : "; ") + std::string("child killed by signal ") +
           std::to_string(WTERMSIG(status));
  } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
    err += (err.empty() ? "" : "; ") + std::string("child failed (code ") +
           std::to_string(WEXITSTATUS(status)) + ")";
  }
  return err;
}

double Percentile(const std::vector<uint64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  // Nearest rank: the smallest value with at least p of the samples at or below it.
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]);
}

RttStats SummarizeRtt(std::vector<uint64_t> samples) {
  RttStats s;
  s.samples = samples.size();
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  s.p50 = Percentile(samples, 0.50);
  s.p99 = Percentile(samples, 0.99);
  s.p999 = Percentile(samples, 0.999);
  return s;
}

void PutMedianWithSpread(BenchRecord& rec, const std::string& metric, const RepSet& reps,
                         std::optional<double> BenchRecord::*field) {
  if (reps.values.empty()) return;
  rec.*field = Median(reps.values);
  if (reps.values.size() > 1) {
    rec.extra[metric + "_min"] = *std::min_element(reps.values.begin(), reps.values.end());
    rec.extra[metric + "_max"] = *std::max_element(reps.values.begin(), reps.values.end());
  }
}

std::vector<std::byte> PatternBuffer(size_t n) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 131 + 7) & 0xff);
  return v;
}

uint64_t TouchBytes(const std::byte* p, size_t n) noexcept {
  uint64_t sum = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    sum += w;
  }
  for (; i < n; ++i) sum += static_cast<uint8_t>(p[i]);
  return sum;
}

uint64_t MeasureNs(const BenchConfig& cfg) noexcept {
  return static_cast<uint64_t>(cfg.seconds_per_rep * 1e9);
}

uint64_t WarmupNs(const BenchConfig& cfg) noexcept {
  return cfg.quick ? 20'000'000ull : 100'000'000ull;
}

uint32_t BatchFor(uint64_t size) noexcept {
  const uint64_t b = (16u << 10) / (size ? size : 1);
  return static_cast<uint32_t>(std::clamp<uint64_t>(b, 1, 32));
}

uint64_t RingCapacityFor(uint64_t size) noexcept {
  // Max message is capacity/2 - 8: four messages' worth, at least 256 KiB (fits L2).
  const uint64_t want = std::max<uint64_t>(uint64_t{256} << 10, 4 * (size + 8));
  return std::bit_ceil(want);
}

std::string ThroughputFromCount(uint64_t count, uint64_t size, uint64_t window_ns,
                                ThroughputFigures* out) {
  if (count == 0) return "no messages in the measured window";
  out->msgs_per_s = static_cast<double>(count) * 1e9 / static_cast<double>(window_ns);
  out->bytes_per_s = out->msgs_per_s * static_cast<double>(size);
  return "";
}

void RunThroughputReps(const BenchConfig& cfg, const ThroughputRepFn& rep, const std::string& note,
                       BenchRecord& rec) {
  RepSet msgs, bytes;
  for (int r = 0; r < cfg.reps; ++r) {
    ThroughputFigures f;
    std::string err = rep(&f);
    if (!err.empty()) {
      rec.error = std::move(err);
      return;
    }
    msgs.Add(f.msgs_per_s);
    bytes.Add(f.bytes_per_s);
  }
  rec.reps = cfg.reps;
  PutMedianWithSpread(rec, "msgs_per_s", msgs, &BenchRecord::msgs_per_s);
  PutMedianWithSpread(rec, "bytes_per_s", bytes, &BenchRecord::bytes_per_s);
  rec.note = note;
}

void RunRttReps(const BenchConfig& cfg, const RttRepFn& rep, const std::string& note,
                BenchRecord& rec) {
  RepSet p50, p99, p999;
  for (int r = 0; r < cfg.reps; ++r) {
    std::vector<uint64_t> samples;
    std::string err = rep(&samples);
    if (err.empty() && samples.empty()) err = "no round trips measured";
    if (!err.empty()) {
      rec.error = std::move(err);
      return;
    }
    const RttStats st = SummarizeRtt(std::move(samples));
    p50.Add(st.p50);
    p99.Add(st.p99);
    p999.Add(st.p999);
  }
  rec.reps = cfg.reps;
  PutMedianWithSpread(rec, "p50_ns", p50, &BenchRecord::p50_ns);
  PutMedianWithSpread(rec, "p99_ns", p99, &BenchRecord::p99_ns);
  PutMedianWithSpread(rec, "p999_ns", p999, &BenchRecord::p999_ns);
  rec.note = note;
}

BenchRecord ThroughputRecord(const std::string& system, uint64_t size) {
  BenchRecord rec;
  rec.system = system;
  rec.pattern = "throughput";
  rec.size = size;
  rec.producers = 1;
  rec.consumers = 1;
  return rec;
}

BenchRecord RttRecord(const std::string& system, uint64_t size) {
  BenchRecord rec;
  rec.system = system;
  rec.pattern = "rtt";
  rec.size = size;
  return rec;
}

}  // namespace shmlink::bench
