// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// One benchmark result and its JSON Lines form, the project-wide benchmark schema (system
// names shared with the Python benchmarks). Every shmlink benchmark emits these records.
#ifndef SHMLINK_BENCH_BENCH_RECORD_H_
#define SHMLINK_BENCH_BENCH_RECORD_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace shmlink::bench {

struct BenchRecord {
  std::string system;   // one of the schema's names, optionally ":variant"
  std::string pattern;  // "throughput" or "rtt"
  uint64_t size = 0;    // message size in bytes
  // throughput records
  std::optional<double> msgs_per_s, bytes_per_s;
  // rtt records
  std::optional<double> p50_ns, p99_ns, p999_ns;
  std::optional<int> producers, consumers, reps;
  // Topics: the number of subscribers (throughput: msgs/s of the slowest one).
  std::optional<int> subscribers;
  // '<metric>_min' / '<metric>_max' spreads, e.g. {"msgs_per_s_min", 1.2e6}
  std::map<std::string, double> extra;
  std::string note;
  std::string error;  // non-empty: the system could not run
};

// One JSON object on one line (no trailing newline).
std::string ToJsonLine(const BenchRecord& r);

// The record a JSON Lines line holds (ToJsonLine's inverse), or nullopt when the line is
// not a JSON object (progress text, blank lines, garbage).
std::optional<BenchRecord> ParseJsonLine(const std::string& line);

// Common knobs every benchmark case receives.
struct BenchConfig {
  bool quick = false;            // CI smoke: short runs
  int reps = 3;                  // repetitions; the median is reported
  double seconds_per_rep = 0.5;  // measuring time per repetition (warm-up excluded)
  std::vector<uint64_t> sizes = {64, 4096, 1 << 20};
  int cpu_a = 0, cpu_b = 1;  // cores the two sides are pinned to
};

// "64,4096,1048576": sizes in the form every benchmark's --sizes flag takes.
std::string JoinSizes(const std::vector<uint64_t>& sizes);

// Pins the calling thread/process to `cpu` (ignored if it fails, e.g. fewer cores).
void PinToCpu(int cpu);

// Median / min / max of a sample (empty -> 0).
double Median(std::vector<double> v);

}  // namespace shmlink::bench

#endif  // SHMLINK_BENCH_BENCH_RECORD_H_
