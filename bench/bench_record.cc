// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "bench/bench_record.h"

#include <sched.h>

#include <algorithm>
#include <nlohmann/json.hpp>

namespace shmlink::bench {

std::string ToJsonLine(const BenchRecord& r) {
  nlohmann::ordered_json j;
  j["system"] = r.system;
  if (!r.error.empty()) {
    j["error"] = r.error;
    if (!r.pattern.empty()) j["pattern"] = r.pattern;
    j["size"] = r.size;
    return j.dump();
  }
  j["pattern"] = r.pattern;
  j["size"] = r.size;
  auto put = [&](const char* k, const std::optional<double>& v) {
    if (v) j[k] = *v;
  };
  put("msgs_per_s", r.msgs_per_s);
  put("bytes_per_s", r.bytes_per_s);
  put("p50_ns", r.p50_ns);
  put("p99_ns", r.p99_ns);
  put("p999_ns", r.p999_ns);
  if (r.producers) j["producers"] = *r.producers;
  if (r.consumers) j["consumers"] = *r.consumers;
  if (r.subscribers) j["subscribers"] = *r.subscribers;
  if (r.reps) j["reps"] = *r.reps;
  for (const auto& [k, v] : r.extra) j[k] = v;
  if (!r.note.empty()) j["note"] = r.note;
  return j.dump();
}

void PinToCpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  (void)sched_setaffinity(0, sizeof(set), &set);
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace shmlink::bench
