// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// crash_stress: crash-injection trials over every IPC primitive (see crash_scenario.h).
//
//   bazel run //tests:crash_stress -- --trials 1000
//   bazel run //tests:crash_stress -- --trials 200 --scenarios spsc --seed 42 --verbose
//
// Prints one JSON summary line on stdout:
//   {"trials": N, "lost": 0, "duplicated": 0, "hangs": 0, "leaked": 0, ...}
// and exits 0 only if nothing was lost, duplicated beyond the semantics, misordered,
// corrupted, hung or leaked, and no process ended with an unexpected status.
#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "tests/reliability/crash_scenario.h"

int main(int argc, char** argv) {
  shmlink::reliability::StressOptions opts;
  CLI::App app{"shmlink crash-injection stress: fork, SIGKILL, verify"};
  app.add_option("--trials", opts.trials, "number of trials (round-robin over scenarios)");
  app.add_option("--seed", opts.seed,
                 "base seed (0: from the clock); trial t uses a seed derived from it");
  app.add_option("--scenarios", opts.scenarios, "comma-separated scenario names, or 'all'");
  app.add_flag("--verbose", opts.verbose, "one line per trial on stderr");
  CLI11_PARSE(app, argc, argv);
  double seconds = 0;
  const auto total = shmlink::reliability::RunStress(opts, &seconds);
  std::printf("%s\n", total.Json(seconds).c_str());
  std::fflush(stdout);
  return total.Clean() && total.trials == opts.trials ? 0 : 1;
}
