// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// ring_throughput: the headline benchmark. Runs every system family side by side (same
// machine, same pinning, same run) and prints JSON Lines (--json) or a readable table with
// ratios against shmlink-spsc.
//
//   bazel run -c opt //bench:ring_throughput -- --json --quick
//   bazel run -c opt //bench:ring_throughput -- --systems shmlink-spsc,unix-socketpair
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_record.h"
#include "bench/cases.h"

namespace shmlink::bench {
namespace {

struct Family {
  const char* name;                              // for --systems
  std::vector<std::string> systems;              // schema names it emits
  void (*run)(const BenchConfig&, const Emit&);  // bench/<family>_cases.cc
};

std::vector<Family> Families() {
  return {
      {"spsc", {"shmlink-spsc", "shmlink-spsc-sleep"}, &RunSpscCases},
      {"socketpair", {"unix-socketpair"}, &RunSocketpairCases},
      {"floor", {"floor-cacheline", "floor-memcpy"}, &RunFloorCases},
      {"mpmc", {"shmlink-mpmc", "mutex-queue"}, &RunMpmcCases},
      {"connection", {"shmlink-connection", "unix-socket-framed"}, &RunConnectionCases},
  };
}

bool Selected(const std::vector<std::string>& filter, const Family& f) {
  if (filter.empty()) return true;
  for (const std::string& want : filter) {
    if (want == f.name) return true;
    for (const std::string& s : f.systems) {
      if (want == s) return true;
    }
  }
  return false;
}

bool RecordSelected(const std::vector<std::string>& filter, const BenchRecord& r) {
  if (filter.empty()) return true;
  const std::string base = r.system.substr(0, r.system.find(':'));
  for (const std::string& want : filter) {
    if (want == r.system || want == base) return true;
  }
  // A family name selects all of its systems.
  for (const Family& f : Families()) {
    if (std::find(filter.begin(), filter.end(), f.name) == filter.end()) continue;
    if (std::find(f.systems.begin(), f.systems.end(), base) != f.systems.end()) return true;
  }
  return false;
}

std::string Human(double v, const char* unit) {
  char buf[64];
  if (v >= 1e9) {
    std::snprintf(buf, sizeof(buf), "%.2f G%s", v / 1e9, unit);
  } else if (v >= 1e6) {
    std::snprintf(buf, sizeof(buf), "%.2f M%s", v / 1e6, unit);
  } else if (v >= 1e3) {
    std::snprintf(buf, sizeof(buf), "%.2f k%s", v / 1e3, unit);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f %s", v, unit);
  }
  return buf;
}

std::string SizeStr(uint64_t s) {
  if (s >= (1u << 20) && s % (1u << 20) == 0) return std::to_string(s >> 20) + " MiB";
  if (s >= 1024 && s % 1024 == 0) return std::to_string(s >> 10) + " KiB";
  return std::to_string(s) + " B";
}

// Readable table: one line per record, with the ratio to shmlink-spsc of the same pattern
// and size (throughput: theirs / ours; rtt: theirs / ours, so > 1 means slower).
void PrintTable(const std::vector<BenchRecord>& recs) {
  std::map<std::pair<std::string, uint64_t>, const BenchRecord*> base;
  for (const BenchRecord& r : recs) {
    if (r.system == "shmlink-spsc" && r.error.empty()) base[{r.pattern, r.size}] = &r;
  }
  std::printf("%-30s %-10s %8s  %14s %14s  %10s %10s %10s  %s\n", "system", "pattern", "size",
              "msgs/s", "bytes/s", "p50", "p99", "p99.9", "vs shmlink-spsc");
  for (const BenchRecord& r : recs) {
    if (!r.error.empty()) {
      std::printf("%-30s %-10s %8s  error: %s\n", r.system.c_str(), r.pattern.c_str(),
                  SizeStr(r.size).c_str(), r.error.c_str());
      continue;
    }
    std::string ratio;
    const BenchRecord* b = nullptr;
    if (auto it = base.find({r.pattern, r.size}); it != base.end()) b = it->second;
    if (r.system == "floor-memcpy" || r.system == "floor-cacheline") {
      // Floors compare against the size they stand for.
      auto it =
          r.system == "floor-memcpy" ? base.find({"throughput", r.size}) : base.find({"rtt", 64});
      b = it != base.end() ? it->second : nullptr;
    }
    char buf[96] = "";
    if (b != nullptr && b != &r) {
      if (r.pattern == "throughput" && b->bytes_per_s && r.bytes_per_s) {
        std::snprintf(buf, sizeof(buf), "spsc is %.2fx its bytes/s",
                      *b->bytes_per_s / *r.bytes_per_s);
      } else if (r.pattern == "rtt" && b->p50_ns && r.p50_ns) {
        std::snprintf(buf, sizeof(buf), "spsc p50 is %.2fx its p50", *b->p50_ns / *r.p50_ns);
      }
    }
    ratio = buf;
    auto num = [](const std::optional<double>& v, const char* unit) {
      return v ? Human(*v, unit) : std::string("-");
    };
    auto ns = [](const std::optional<double>& v) {
      if (!v) return std::string("-");
      char b2[32];
      if (*v >= 1e6) {
        std::snprintf(b2, sizeof(b2), "%.2f ms", *v / 1e6);
      } else if (*v >= 1e3) {
        std::snprintf(b2, sizeof(b2), "%.2f us", *v / 1e3);
      } else {
        std::snprintf(b2, sizeof(b2), "%.0f ns", *v);
      }
      return std::string(b2);
    };
    std::printf("%-30s %-10s %8s  %14s %14s  %10s %10s %10s  %s\n", r.system.c_str(),
                r.pattern.c_str(), SizeStr(r.size).c_str(), num(r.msgs_per_s, "").c_str(),
                num(r.bytes_per_s, "B").c_str(), ns(r.p50_ns).c_str(), ns(r.p99_ns).c_str(),
                ns(r.p999_ns).c_str(), ratio.c_str());
  }
}

}  // namespace
}  // namespace shmlink::bench

int main(int argc, char** argv) {
  using namespace shmlink::bench;
  CLI::App app{"shmlink ring benchmark: shmlink-spsc against sockets and hardware floors"};
  bool json = false, quick = false;
  BenchConfig cfg;
  std::string systems;
  std::vector<uint64_t> sizes;
  app.add_flag("--json", json, "JSON Lines on stdout (one record per case), nothing else");
  app.add_flag("--quick", quick, "CI smoke run: 1 rep of 0.15 s per case");
  app.add_option("--reps", cfg.reps, "repetitions per case (median reported)")
      ->check(CLI::Range(1, 100));
  app.add_option("--seconds", cfg.seconds_per_rep, "measured seconds per repetition")
      ->check(CLI::Range(0.01, 60.0));
  app.add_option("--systems", systems,
                 "comma-separated systems or families (spsc, socketpair, floor) to run");
  app.add_option("--sizes", sizes, "message sizes in bytes (default 64 4096 1048576)");
  app.add_option("--cpu-a", cfg.cpu_a, "core of the first process");
  app.add_option("--cpu-b", cfg.cpu_b, "core of the second process");
  CLI11_PARSE(app, argc, argv);
  if (quick) {
    cfg.quick = true;
    if (app.count("--reps") == 0) cfg.reps = 1;
    if (app.count("--seconds") == 0) cfg.seconds_per_rep = 0.15;
  }
  if (!sizes.empty()) cfg.sizes = sizes;
  std::vector<std::string> filter;
  {
    std::stringstream ss(systems);
    std::string item;
    while (std::getline(ss, item, ',')) {
      if (!item.empty()) filter.push_back(item);
    }
  }
  std::vector<BenchRecord> records;
  Emit emit = [&](const BenchRecord& r) {
    if (!RecordSelected(filter, r)) return;
    records.push_back(r);
    if (json) {
      std::cout << ToJsonLine(r) << "\n" << std::flush;
    } else {
      std::fprintf(stderr, "  done: %s %s %llu\n", r.system.c_str(), r.pattern.c_str(),
                   static_cast<unsigned long long>(r.size));
    }
  };
  for (const Family& f : Families()) {
    if (Selected(filter, f)) f.run(cfg, emit);
  }
  if (!json) PrintTable(records);
  return 0;
}
