// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "bench/bench_record.h"

#include <sched.h>

#include <algorithm>
#include <cstring>
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

std::optional<BenchRecord> ParseJsonLine(const std::string& line) {
  if (line.empty() || line[0] != '{') return std::nullopt;
  const auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  BenchRecord r;
  r.system = j.value("system", "");
  r.pattern = j.value("pattern", "");
  r.size = j.value("size", uint64_t{0});
  auto num = [&](const char* k) -> std::optional<double> {
    if (j.contains(k) && j[k].is_number()) return j[k].get<double>();
    return std::nullopt;
  };
  r.msgs_per_s = num("msgs_per_s");
  r.bytes_per_s = num("bytes_per_s");
  r.p50_ns = num("p50_ns");
  r.p99_ns = num("p99_ns");
  r.p999_ns = num("p999_ns");
  for (const char* k : {"producers", "consumers", "subscribers", "reps"}) {
    if (j.contains(k) && j[k].is_number_integer()) {
      std::optional<int> v = j[k].get<int>();
      if (!std::strcmp(k, "producers")) r.producers = v;
      if (!std::strcmp(k, "consumers")) r.consumers = v;
      if (!std::strcmp(k, "subscribers")) r.subscribers = v;
      if (!std::strcmp(k, "reps")) r.reps = v;
    }
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    if (it->is_number() && (k.ends_with("_min") || k.ends_with("_max"))) {
      r.extra[k] = it->get<double>();
    }
  }
  r.note = j.value("note", "");
  if (j.contains("error"))
    r.error = j["error"].is_string() ? j["error"].get<std::string>() : "error";
  return r;
}

std::string JoinSizes(const std::vector<uint64_t>& sizes) {
  std::string s;
  for (uint64_t z : sizes) s += (s.empty() ? "" : ",") + std::to_string(z);
  return s;
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
