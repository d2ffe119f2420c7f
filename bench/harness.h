// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Harness for cross-process benchmark cases: two processes (this one and a forked child)
// pinned to cfg.cpu_a / cfg.cpu_b, a start barrier and a stop flag in shared memory, a
// clock, and percentile helpers. Every *_cases.cc uses it, so all systems are measured with
// the same process layout and the same arithmetic.
//
//   PairSync* sync = ...;                  // from RunPinnedPair
//   child:  set up; sync->ArriveAndWait(); loop until sync->StopRequested() ...
//   parent: set up; sync->ArriveAndWait(); measure; sync->RequestStop(); ...
//
// Thread safety: not-thread-safe (benchmarks are single-threaded per process).
#ifndef SHMLINK_BENCH_HARNESS_H_
#define SHMLINK_BENCH_HARNESS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "bench/bench_record.h"

#include <shmlink/blocking_wait.h>

namespace shmlink::bench {

// The ring's own spin-wait hint (pause / yield), for the cases' busy loops: the floors
// spin exactly as the structures they are compared with.
using internal::CpuRelax;

// Monotonic nanoseconds (CLOCK_MONOTONIC via the vDSO: ~20 ns, no syscall with a TSC clock).
uint64_t NowNs() noexcept;

// Control block shared by the two processes of a case (lives in an anonymous MAP_SHARED
// mapping created before fork).
struct PairSync {
  alignas(64) std::atomic<uint32_t> arrived{0};
  alignas(64) std::atomic<uint32_t> stop{0};
  alignas(64) std::atomic<uint64_t> child_value{0};  // a result the child reports back

  // Both processes call this once after their set-up; returns when both have arrived.
  // SYNC(barrier): seq_cst RMW + acquire loads: set-up of each side happens-before the
  // other's timed loop.
  void ArriveAndWait() noexcept;
  // SYNC(stop): release store / acquire load; it only ends loops (no data hand-off).
  void RequestStop() noexcept { stop.store(1, std::memory_order_release); }
  bool StopRequested() const noexcept { return stop.load(std::memory_order_acquire) != 0; }
};

// Forks a child pinned to cfg.cpu_b that runs `child(sync)` and exits with its result;
// pins this process to cfg.cpu_a and runs `parent(sync)`. Waits for the child (killing it
// if it has not exited 10 s after the parent side returned). Returns "" on success, else
// a description of what failed (parent side returned non-zero, child's exit status).
std::string RunPinnedPair(const BenchConfig& cfg, const std::function<int(PairSync&)>& parent,
                          const std::function<int(PairSync&)>& child);

// Latency summary of round-trip samples (ns). Nearest-rank percentiles.
struct RttStats {
  double p50 = 0, p99 = 0, p999 = 0;
  size_t samples = 0;
};
RttStats SummarizeRtt(std::vector<uint64_t> samples);
double Percentile(const std::vector<uint64_t>& sorted, double p);

// Repetition helpers: the median of each metric over reps, with '<metric>_min/_max'.
struct RepSet {
  std::vector<double> values;
  void Add(double v) { values.push_back(v); }
};
void PutMedianWithSpread(BenchRecord& rec, const std::string& metric, const RepSet& reps,
                         std::optional<double> BenchRecord::*field);

// Buffer of `n` bytes with a deterministic non-zero pattern (page-touched).
std::vector<std::byte> PatternBuffer(size_t n);

// Sums the payload as 64-bit words (a consumer "reading in place"); keeps the compiler
// from discarding the reads.
uint64_t TouchBytes(const std::byte* p, size_t n) noexcept;

// Duration of the measured window and the warm-up before it, per cfg (quick mode shorter).
uint64_t MeasureNs(const BenchConfig& cfg) noexcept;
uint64_t WarmupNs(const BenchConfig& cfg) noexcept;

// RTT loop condition: stop once the measured window is over and at least 200 samples were
// taken (a loaded machine can stall one side for the whole window), or 20 s after `end`.
inline bool RttDone(uint64_t now, uint64_t end, size_t samples) noexcept {
  return now >= end && (samples >= 200 || now >= end + 20'000'000'000ull);
}

// A ring capacity that holds messages of `size` with room to batch.
uint64_t RingCapacityFor(uint64_t size) noexcept;
// Messages per commit/release batch in the throughput cases: min(32, max(1, 16 KiB / size)).
uint32_t BatchFor(uint64_t size) noexcept;

// The measured window of a throughput receiver's loop. Construct it right after the start
// barrier: the first WarmupNs(cfg) are warm-up; the window opens at the first clock check
// after that and closes at the first check at least MeasureNs(cfg) later. The clock is read
// only every `check_every` messages (cheap per message for small sizes). Per message:
//   receive; if (window.measuring()) count it; if (window.Tick()) break;
// then elapsed_ns() is the window's length (1 if it never closed).
class ThroughputWindow {
 public:
  ThroughputWindow(const BenchConfig& cfg, uint32_t check_every) noexcept
      : warm_end_(NowNs() + WarmupNs(cfg)), measure_(MeasureNs(cfg)), check_every_(check_every) {}

  // True once the window is open: the current message counts.
  bool measuring() const noexcept { return measuring_; }

  // Call once per message after counting it; returns true when the window has closed.
  bool Tick() noexcept {
    if (++tick_ != check_every_) return false;
    tick_ = 0;
    const uint64_t now = NowNs();
    if (!measuring_) {
      if (now >= warm_end_) {
        measuring_ = true;
        start_ = now;
      }
      return false;
    }
    if (now - start_ >= measure_) {
      elapsed_ns_ = now - start_;
      return true;
    }
    return false;
  }

  uint64_t elapsed_ns() const noexcept { return elapsed_ns_; }

 private:
  const uint64_t warm_end_, measure_;
  const uint32_t check_every_;
  bool measuring_ = false;
  uint64_t start_ = 0, elapsed_ns_ = 1;
  uint32_t tick_ = 0;
};

// The round-trip loop of an RTT case's pinging side, started right after the start barrier:
// WarmupNs(cfg) of unrecorded round trips, then round trips recorded into *samples until
// RttDone. `round_trip(i)` (i = 0, 1, 2, ...) does one round trip and returns 0, or a
// non-zero code that ends the loop and is returned. A sample is NowNs() right before the
// call to NowNs() right after it.
template <typename RoundTrip>
int TimeRoundTrips(const BenchConfig& cfg, std::vector<uint64_t>* samples, RoundTrip&& round_trip) {
  const uint64_t warm_end = NowNs() + WarmupNs(cfg);
  const uint64_t end = warm_end + MeasureNs(cfg);
  for (uint64_t i = 0;; ++i) {
    const uint64_t t0 = NowNs();
    if (RttDone(t0, end, samples->size())) return 0;
    if (const int rc = round_trip(i); rc != 0) return rc;
    const uint64_t t1 = NowNs();
    if (t0 >= warm_end) samples->push_back(t1 - t0);
  }
}

// One repetition of a throughput case: its figures, or a non-empty error.
struct ThroughputFigures {
  double msgs_per_s = 0, bytes_per_s = 0;
};
using ThroughputRepFn = std::function<std::string(ThroughputFigures* out)>;
// The end of a throughput repetition whose receiver counted `count` messages of `size`
// bytes in `window_ns`: fills *out and returns "", or returns the error of an empty window.
std::string ThroughputFromCount(uint64_t count, uint64_t size, uint64_t window_ns,
                                ThroughputFigures* out);
// One repetition of an RTT case: fills *samples (ns per round trip), or returns an error.
using RttRepFn = std::function<std::string(std::vector<uint64_t>* samples)>;

// Run `rep` up to cfg.reps times into `rec` (whose system, pattern, size etc. the caller
// has set). At the first error, rec.error is set to it and nothing else changes. Otherwise
// rec.reps, the medians with their spread (PutMedianWithSpread) and rec.note = note are set.
// An RTT repetition that succeeds without samples is the error "no round trips measured".
void RunThroughputReps(const BenchConfig& cfg, const ThroughputRepFn& rep, const std::string& note,
                       BenchRecord& rec);
void RunRttReps(const BenchConfig& cfg, const RttRepFn& rep, const std::string& note,
                BenchRecord& rec);

// A record of `system` for `pattern` and `size`; throughput records are one producer, one
// consumer.
BenchRecord ThroughputRecord(const std::string& system, uint64_t size);
BenchRecord RttRecord(const std::string& system, uint64_t size);

}  // namespace shmlink::bench

#endif  // SHMLINK_BENCH_HARNESS_H_
