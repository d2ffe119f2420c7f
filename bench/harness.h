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

namespace shmlink::bench {

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

}  // namespace shmlink::bench

#endif  // SHMLINK_BENCH_HARNESS_H_
