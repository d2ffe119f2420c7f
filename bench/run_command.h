// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Runs a helper program (a Python benchmark, gnuplot) as a child process and streams its
// standard output line by line; the benchmarks that drive other programs use it.
#ifndef SHMLINK_BENCH_RUN_COMMAND_H_
#define SHMLINK_BENCH_RUN_COMMAND_H_

#include <functional>
#include <string>
#include <vector>

namespace shmlink::bench {

// Runs argv (argv[0] an absolute path) with `env` ("NAME=value") added, in `cwd` (empty:
// ours), calling on_line for each line of its stdout; its stderr passes through. Kills it
// after timeout_s. Returns "" on exit status 0, else one line saying what went wrong.
std::string RunCommand(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                       const std::string& cwd, double timeout_s,
                       const std::function<void(const std::string&)>& on_line);

}  // namespace shmlink::bench

#endif  // SHMLINK_BENCH_RUN_COMMAND_H_
