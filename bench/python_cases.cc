// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// RunPythonCases: the Python systems. shmlink's own Python benchmark (python/bench.py
// --json: python-shmlink-queue/pipe/ring and, by the same method, stock multiprocessing)
// and bench/python_mp_bench.py for every python-mp-* system and pattern the first did not
// measure. Both run as child processes of /usr/bin/python3; their JSON Lines are passed on.
#include <unistd.h>

#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "bench/bench_record.h"
#include "bench/cases.h"
#include "bench/harness.h"
#include "bench/run_command.h"
#include "bench/source_tree.h"

namespace shmlink::bench {
namespace {

std::string Number(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

}  // namespace

// Python: the shmlink module's own benchmark, python/bench.py --json (throughput of
// python-shmlink-* and, by the same method, python-mp-*), when it and the built extension
// exist; then bench/python_mp_bench.py for every python-mp-* system and pattern it did not
// measure (RTT always: python/bench.py measures throughput only).
void RunPythonCases(const BenchConfig& cfg, const Emit& emit) {
  const std::string root = SourceRoot();
  const std::string runfiles = RunfilesRoot();
  const std::string py = "/usr/bin/python3";
  std::set<std::pair<std::string, std::string>> seen;  // (system, pattern)
  auto forward = [&](const std::string& line) {
    auto r = ParseJsonLine(line);
    if (!r || !r->system.starts_with("python-")) return;
    seen.insert({r->system.substr(0, r->system.find(':')), r->pattern});
    emit(*r);
  };
  const double budget = 300 + 60.0 * cfg.reps * cfg.seconds_per_rep * 8;
  // python/bench.py with its extension: from compare's runfiles (built with it, see
  // bench/BUILD), else from the source tree and bazel-bin.
  std::string bench_py, pythonpath, why_not = "python/bench.py not found";
  const std::vector<std::pair<std::string, std::string>> candidates = {
      {"python", "python"},
      {runfiles + "/python", runfiles + "/python"},
      {root + "/python", root + "/python:" + root + "/bazel-bin/python"}};
  for (const auto& [dir, path] : candidates) {
    if (access((dir + "/bench.py").c_str(), R_OK) != 0) continue;
    const std::string so_a = dir + "/shmlink/_shmlink.so";
    const std::string so_b = root + "/bazel-bin/python/shmlink/_shmlink.so";
    if (access(so_a.c_str(), R_OK) != 0 && access(so_b.c_str(), R_OK) != 0) {
      why_not = "the extension is not built (bazel build //python:all)";
      continue;
    }
    bench_py = dir + "/bench.py";
    pythonpath = path;
    break;
  }
  if (!bench_py.empty()) {
    std::fprintf(stderr, "  running python/bench.py --json ...\n");
    std::vector<std::string> argv = {py,
                                     bench_py,
                                     "--json",
                                     "--sizes",
                                     JoinSizes(cfg.sizes),
                                     "--reps",
                                     std::to_string(cfg.reps),
                                     "--seconds",
                                     Number(cfg.seconds_per_rep)};
    if (cfg.quick) argv.push_back("--quick");
    why_not = RunCommand(argv, {"PYTHONPATH=" + pythonpath}, "", budget, forward);
    if (!why_not.empty()) why_not = "python/bench.py " + why_not;
  }
  for (const char* s : {"python-shmlink-queue", "python-shmlink-pipe", "python-shmlink-ring"}) {
    if (seen.count({s, "throughput"}) || why_not.empty()) continue;
    BenchRecord r;
    r.system = s;
    r.pattern = "throughput";
    r.error = "not measured: " + why_not;
    emit(r);
  }
  // Stock multiprocessing baselines, per pattern, for what python/bench.py did not cover.
  std::map<std::string, std::string> todo;  // patterns -> systems
  for (const char* s : {"python-mp-pipe", "python-mp-queue", "python-mp-listener"}) {
    std::string pats;
    for (const char* p : {"throughput", "rtt"}) {
      if (!seen.count({s, p})) pats += (pats.empty() ? "" : ",") + std::string(p);
    }
    if (!pats.empty()) todo[pats] += (todo[pats].empty() ? "" : ",") + std::string(s);
  }
  // runfiles: the cwd of bazel run/test, else next to the binary, else the source tree
  std::string script = "bench/python_mp_bench.py";
  for (const std::string& alt : {runfiles + "/" + script, root + "/" + script}) {
    if (access(script.c_str(), R_OK) != 0) script = alt;
  }
  for (const auto& [pats, systems] : todo) {
    std::string err;
    if (access(py.c_str(), X_OK) != 0) {
      err = py + " not found";
    } else {
      err = RunCommand(
          {py, script, "--systems", systems, "--patterns", pats, "--sizes", JoinSizes(cfg.sizes),
           "--reps", std::to_string(cfg.reps), "--seconds", Number(cfg.seconds_per_rep), "--warmup",
           Number(static_cast<double>(WarmupNs(cfg)) * 1e-9), "--cpu-a", std::to_string(cfg.cpu_a),
           "--cpu-b", std::to_string(cfg.cpu_b)},
          {}, "", budget, forward);
    }
    if (!err.empty()) {
      BenchRecord r;
      r.system = systems.substr(0, systems.find(','));
      r.pattern = "throughput";
      r.error = "python_mp_bench.py " + err;
      emit(r);
    }
  }
}

}  // namespace shmlink::bench
