// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Standalone smoke driver for RunMpmcCases (the real entry point is
// //bench:ring_throughput). Usage: mpmc_smoke [--quick] [seconds_per_rep] [reps]
// Environment: SHMLINK_MPMC_CPUS=a,b and the knobs of bench/mpmc_cases.cc.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "bench/bench_record.h"
#include "bench/cases.h"

int main(int argc, char** argv) {
  shmlink::bench::BenchConfig cfg;
  cfg.sizes = {64, 4096};
  // SHMLINK_MPMC_CPUS=a,b: cores of the producers and of the consumers (default 0,1).
  if (const char* cpus = std::getenv("SHMLINK_MPMC_CPUS")) {
    std::sscanf(cpus, "%d,%d", &cfg.cpu_a, &cfg.cpu_b);
  }
  int pos = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      cfg.quick = true;
    } else if (pos++ == 0) {
      cfg.seconds_per_rep = std::atof(argv[i]);
    } else {
      cfg.reps = std::atoi(argv[i]);
    }
  }
  shmlink::bench::RunMpmcCases(cfg, [](const shmlink::bench::BenchRecord& r) {
    std::printf("%s\n", shmlink::bench::ToJsonLine(r).c_str());
    std::fflush(stdout);
  });
  return 0;
}
