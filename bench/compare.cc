// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// //bench:compare — shmlink against the alternatives, in one run, on this machine.
//
//   bazel run -c opt //bench:compare                 # full run (< 15 min)
//   bazel run -c opt //bench:compare -- --quick      # CI smoke run (< 2 min)
//   bazel run -c opt //bench:compare -- --systems pipe,iceoryx --json=out.jsonl
//
// Every system family runs its throughput and RTT cases for the same sizes in two separate
// processes pinned to two cores (see bench/peer_harness.h and the shmlink harness). While it
// runs, one progress line per case goes to stderr. At the end it prints (and writes to
// bench/out/compare.md) the machine description, one Markdown table per pattern with each
// system's figure and its ratio to shmlink, the target checks and the failures; it writes
// the records as JSON Lines (--json) and a PNG plot per pattern (gnuplot) into bench/out/.
// See docs/compare.md for what each peer does per message.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_record.h"
#include "bench/cases.h"
#include "bench/compare_report.h"
#include "bench/harness.h"
#include "bench/machine_state.h"
#include "bench/run_command.h"
#include "bench/source_tree.h"

namespace shmlink::bench {
namespace {

namespace fs = std::filesystem;

struct Options {
  std::string json_path, out_dir;
  std::vector<std::string> systems;
  bool plot = true;
  bool rerun = true;  // rerun a size whose case was disturbed (off with --quick)
};

// ---- The systems ---------------------------------------------------------------------------
// One entry per system family: the name --systems accepts, the schema names it emits, and
// its Run*Cases function (bench/cases.h). To add a family: declare its function in cases.h,
// add the entry here and its cc_library to compare's deps in bench/BUILD.
struct Family {
  const char* name;
  std::vector<std::string> systems;
  void (*run)(const BenchConfig&, const Emit&);
};

// Every hardware floor: the cache-line and memcpy floors, then the transfer and stream
// floors the throughput figures are judged against.
void RunAllFloorCases(const BenchConfig& cfg, const Emit& emit) {
  RunFloorCases(cfg, emit);
  RunFloorFlowCases(cfg, emit);
}

const std::vector<Family>& Families() {
  static const std::vector<Family> families = {
      // shmlink itself (bench/spsc_cases.cc etc.): the reference, its blocking-wait
      // variants, the socketpair baseline and the hardware floors.
      {"spsc", {"shmlink-spsc", "shmlink-spsc-sleep"}, &RunSpscCases},
      {"socketpair", {"unix-socketpair"}, &RunSocketpairCases},
      {"floor",
       {"floor-cacheline", "floor-memcpy", "floor-transfer", "floor-stream"},
       &RunAllFloorCases},
      // MPMC, 2 producers -> 2 consumers (the layout; SHMLINK_MPMC_PROCS overrides),
      // and the Connection (shm rings after the Python-compatible handshake).
      {"mpmc", {"shmlink-mpmc", "mutex-queue"}, &RunMpmcPairCases},
      {"connection", {"shmlink-connection", "unix-socket-framed"}, &RunConnectionCases},
      // The peers, on bench/peer_harness.h, and the Python systems.
      {"pipe", {"pipe"}, &RunPipeCases},
      {"tcp", {"tcp-loopback"}, &RunTcpCases},
      {"iceoryx", {"iceoryx"}, &RunIceoryxCases},
      {"boost", {"boost-message-queue"}, &RunBoostCases},
      // Publish/subscribe, one publisher to N = 1, 2, 4 subscriber processes.
      {"pubsub", {"shmlink-pubsub"}, &RunPubsubCases},
      {"iceoryx-pubsub", {"iceoryx"}, &RunIceoryxPubsubCases},
      {"python",
       {"python-mp-pipe", "python-mp-queue", "python-mp-listener", "python-shmlink-queue",
        "python-shmlink-pipe", "python-shmlink-ring"},
       &RunPythonCases},
  };
  return families;
}

// Systems the issue asks for whose family is not linked into this binary (reported as such).
const std::vector<std::string>& ExpectedSystems() {
  static const std::vector<std::string> all = {"shmlink-spsc",        "shmlink-spsc-sleep",
                                               "shmlink-mpmc",        "shmlink-connection",
                                               "unix-socketpair",     "pipe",
                                               "tcp-loopback",        "iceoryx",
                                               "boost-message-queue", "python-mp-pipe",
                                               "python-mp-queue",     "python-mp-listener",
                                               "floor-cacheline",     "floor-memcpy",
                                               "floor-transfer",      "floor-stream"};
  return all;
}

// Relative paths on the command line are relative to where the user ran `bazel run`.
std::string UserPath(const std::string& p) {
  if (p.empty() || p[0] == '/') return p;
  const char* wd = std::getenv("BUILD_WORKING_DIRECTORY");
  return wd ? std::string(wd) + "/" + p : p;
}

// ---- Time -----------------------------------------------------------------------------------

std::string UtcNow() {
  std::time_t t = std::time(nullptr);
  char b[64];
  std::strftime(b, sizeof b, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  return b;
}

// Writes gnuplot data + script and renders <out>/throughput.png and <out>/rtt.png.
// Distinct colours (shmlink systems come first and get the dark ones).
constexpr const char* kColors[] = {"#000000", "#c00000", "#7f3f00", "#4b0082", "#1f77b4",
                                   "#ff7f0e", "#2ca02c", "#17becf", "#9467bd", "#8c564b",
                                   "#e377c2", "#7f7f7f", "#bcbd22", "#d62728", "#aec7e8",
                                   "#98df8a", "#ffbb78", "#c5b0d5", "#f7b6d2", "#9edae5"};

std::string Plot(const Results& res, const std::string& out, const std::string& machine) {
  std::vector<std::string> systems;
  for (const auto& r : res.ok) {
    if (std::find(systems.begin(), systems.end(), Shown(r)) == systems.end()) {
      systems.push_back(Shown(r));
    }
  }
  // Legend order: shmlink first, the peers as they ran, the floors last.
  auto rank = [](const std::string& s) {
    return s.starts_with("shmlink") ? 0 : s.starts_with("floor") ? 2 : 1;
  };
  std::stable_sort(systems.begin(), systems.end(),
                   [&](const std::string& a, const std::string& b) { return rank(a) < rank(b); });
  // One gnuplot data block per system (blocks separated by two blank lines).
  std::ostringstream script;
  script << "# Generated by //bench:compare; re-render with: gnuplot " << out << "/compare.gp\n"
         << "set terminal pngcairo size 1600,640 font 'DejaVu Sans,10' noenhanced\n"
         << "set logscale xy\nset grid xtics ytics mytics\nset key outside right top\n"
         << "set xtics ('64 B' 64, '4 KiB' 4096, '64 KiB' 65536, '1 MiB' 1048576)\n"
         << "set xrange [40:1700000]\nset xlabel 'message size'\n"
         << "set bars small\n";
  struct Panel {
    const char* file;
    const char* pattern;
    const char* title;
    const char* ylabel;
    std::function<std::array<double, 3>(const BenchRecord&)> get;
  };
  const std::vector<Panel> panels = {
      {"throughput_msgs", "throughput", "Throughput (msgs/s, median with min–max)", "messages / s",
       [](const BenchRecord& r) {
         return std::array<double, 3>{*r.msgs_per_s, Extra(r, "msgs_per_s_min"),
                                      Extra(r, "msgs_per_s_max")};
       }},
      {"throughput_bytes", "throughput", "Bandwidth (GB/s, median with min–max)", "GB / s",
       [](const BenchRecord& r) {
         return std::array<double, 3>{*r.bytes_per_s / 1e9, Extra(r, "bytes_per_s_min") / 1e9,
                                      Extra(r, "bytes_per_s_max") / 1e9};
       }},
      {"rtt_p50", "rtt", "Round trip p50 (µs, median with min–max)", "µs",
       [](const BenchRecord& r) {
         return std::array<double, 3>{*r.p50_ns / 1e3, Extra(r, "p50_ns_min") / 1e3,
                                      Extra(r, "p50_ns_max") / 1e3};
       }},
      {"rtt_p99", "rtt", "Round trip p99 (µs, median with min–max)", "µs",
       [](const BenchRecord& r) {
         return std::array<double, 3>{*r.p99_ns / 1e3, Extra(r, "p99_ns_min") / 1e3,
                                      Extra(r, "p99_ns_max") / 1e3};
       }},
  };
  std::map<std::string, std::vector<std::string>> plotted;  // panel -> systems with data
  for (const auto& p : panels) {
    std::ofstream dat(out + "/" + p.file + ".dat");
    for (const auto& s : systems) {
      std::vector<const BenchRecord*> rs;
      for (const auto& r : res.ok) {
        if (Shown(r) == s && r.pattern == p.pattern) rs.push_back(&r);
      }
      if (rs.empty()) continue;
      std::sort(rs.begin(), rs.end(), [](auto* a, auto* b) { return a->size < b->size; });
      dat << "# " << s << "\n";
      for (const auto* r : rs) {
        auto v = p.get(*r);
        if (!std::isfinite(v[1])) v[1] = v[0];
        if (!std::isfinite(v[2])) v[2] = v[0];
        dat << r->size << " " << v[0] << " " << v[1] << " " << v[2] << "\n";
      }
      dat << "\n\n";
      plotted[p.file].push_back(s);
    }
  }
  // Colour and point type follow the system (same in every panel); the legend is drawn
  // once, right of both panels.
  auto style = [&](const std::string& s) {
    const size_t i =
        static_cast<size_t>(std::find(systems.begin(), systems.end(), s) - systems.begin());
    const bool shm = s.starts_with("shmlink");
    const bool floor = s.starts_with("floor");
    std::ostringstream st;
    st << "lw "
       << (shm     ? 3
           : floor ? 2
                   : 1.5)
       << " dt " << (floor ? 2 : 1) << " pt " << (i % 13 + 1) << " ps 1.2 lc rgb '"
       << kColors[i % (sizeof kColors / sizeof kColors[0])] << "'";
    return st.str();
  };
  auto plot_cmd = [&](const Panel& p, bool key) {
    std::ostringstream c;
    c << "set title '" << p.title << "'\nset ylabel '" << p.ylabel << "'\n"
      << (key ? "set key at screen 0.995,0.86 right top Left reverse samplen 3\n" : "unset key\n")
      << "plot ";
    const auto& ss = plotted[p.file];
    for (size_t i = 0; i < ss.size(); ++i) {
      c << (i ? ", \\\n  " : "") << "'" << out << "/" << p.file << ".dat' index " << i
        << " using 1:2:3:4 with yerrorlines " << style(ss[i]) << " title '" << ss[i] << "'";
    }
    if (ss.empty()) c << "NaN notitle";
    c << "\n";
    return c.str();
  };
  for (const char* pat : {"throughput", "rtt"}) {
    script << "set output '" << out << "/" << pat << ".png'\n"
           << "set multiplot layout 1,2 margins 0.055,0.80,0.11,0.87 spacing 0.07 title '" << pat
           << " — " << machine << "' font ',11'\n";
    bool first = true;
    for (const auto& p : panels) {
      if (std::string(p.pattern) != pat) continue;
      script << plot_cmd(p, !first);
      first = false;
    }
    script << "unset multiplot\nset output\n";
  }
  const std::string gp = out + "/compare.gp";
  std::ofstream(gp) << script.str();
  if (access("/usr/bin/gnuplot", X_OK) != 0)
    return "gnuplot not installed (apt install gnuplot-nox)";
  std::string err = RunCommand({"/usr/bin/gnuplot", gp}, {}, "", 60, [](const std::string&) {});
  return err.empty() ? "" : "gnuplot " + err;
}

int Main(int argc, char** argv) {
  CLI::App app{"shmlink vs. the alternatives: one run, same sizes, same process layout"};
  BenchConfig cfg;
  cfg.sizes = {64, 4096, 65536, 1 << 20};
  cfg.reps = 5;
  cfg.seconds_per_rep = 0.6;
  Options opt;
  std::string systems_csv, sizes_csv;
  bool list = false;
  app.add_flag("--quick", cfg.quick, "CI smoke run: 2 reps of 0.1 s (under 2 minutes)");
  app.add_option("--json", opt.json_path, "also write the records as JSON Lines to this file");
  app.add_option("--systems", systems_csv,
                 "comma-separated families or system names to run (default: all; see --list)");
  app.add_option("--sizes", sizes_csv, "comma-separated message sizes in bytes (>= 8)");
  app.add_option("--reps", cfg.reps, "repetitions per case (median and min–max reported)");
  app.add_option("--seconds", cfg.seconds_per_rep, "measuring time per repetition");
  app.add_option(
      "--cpus",
      [&](const CLI::results_t& v) {
        return std::sscanf(v[0].c_str(), "%d,%d", &cfg.cpu_a, &cfg.cpu_b) == 2;
      },
      "the two cores, e.g. 0,1");
  app.add_option("--out", opt.out_dir,
                 "directory for compare.md, *.png, *.dat (default bench/out)");
  app.add_flag("!--no-plot", opt.plot, "skip the PNG plots");
  app.add_flag("--list", list, "list the families and systems and exit");
  app.add_flag("!--no-rerun", opt.rerun,
               "never measure a disturbed size again (--quick never does)");
  std::string report_from;
  app.add_option("--report-from", report_from,
                 "measure nothing: rebuild the report and plots from a saved --json file");
  CLI11_PARSE(app, argc, argv);

  const bool reps_set = app.count("--reps") > 0, secs_set = app.count("--seconds") > 0;
  if (cfg.quick) {
    opt.rerun = false;
    if (!reps_set) cfg.reps = 2;
    if (!secs_set) cfg.seconds_per_rep = 0.1;
  }
  if (!sizes_csv.empty()) {
    cfg.sizes.clear();
    std::stringstream ss(sizes_csv);
    for (std::string t; std::getline(ss, t, ',');) cfg.sizes.push_back(std::stoull(t));
  }
  if (!systems_csv.empty()) {
    std::stringstream ss(systems_csv);
    for (std::string t; std::getline(ss, t, ',');) opt.systems.push_back(t);
  }
  if (list) {
    for (const auto& f : Families()) {
      std::printf("%-12s", f.name);
      for (const auto& s : f.systems) std::printf(" %s", s.c_str());
      std::printf("\n");
    }
    return 0;
  }
  // Output locations.
  if (opt.out_dir.empty()) {
    opt.out_dir = SourceRoot().empty() ? "bench/out" : SourceRoot() + "/bench/out";
  } else {
    opt.out_dir = UserPath(opt.out_dir);
  }
  std::error_code ec;
  fs::create_directories(opt.out_dir, ec);
  opt.out_dir = fs::absolute(opt.out_dir).string();
  std::ofstream json;
  if (!opt.json_path.empty()) {
    json.open(UserPath(opt.json_path));
    if (!json) {
      std::fprintf(stderr, "compare: cannot write %s\n", opt.json_path.c_str());
      return 2;
    }
  }

  // Which families to run and which of their systems to keep.
  std::vector<const Family*> run;
  std::set<std::string> keep;  // empty: keep everything the selected families emit
  for (const auto& f : Families()) {
    bool sel = opt.systems.empty();
    for (const auto& want : opt.systems) {
      if (want == f.name) sel = true;
      if (std::find(f.systems.begin(), f.systems.end(), want) != f.systems.end()) {
        sel = true;
        keep.insert(want);
      }
    }
    if (sel) run.push_back(&f);
    // A family named as a whole keeps all its systems.
    for (const auto& want : opt.systems) {
      if (want == f.name) keep.insert(f.systems.begin(), f.systems.end());
    }
  }
  for (const auto& want : opt.systems) {
    bool known = false;
    for (const auto& f : Families()) {
      known |=
          want == f.name || std::find(f.systems.begin(), f.systems.end(), want) != f.systems.end();
    }
    if (!known) {
      std::fprintf(stderr, "compare: unknown system '%s' (see --list)\n", want.c_str());
      return 2;
    }
  }
  std::set<std::string> not_built;
  if (opt.systems.empty()) {
    for (const auto& s : ExpectedSystems()) {
      bool have = false;
      for (const auto& f : Families()) {
        have |= std::find(f.systems.begin(), f.systems.end(), s) != f.systems.end();
      }
      if (!have) not_built.insert(s);
    }
  }

  const std::string machine = MachineDescription();
  std::fprintf(stderr, "compare: %s\ncompare: sizes %s, %d reps x %.2f s, cores %d and %d%s\n",
               machine.c_str(), JoinSizes(cfg.sizes).c_str(), cfg.reps, cfg.seconds_per_rep,
               cfg.cpu_a, cfg.cpu_b, cfg.quick ? " (--quick)" : "");
  Results res;
  const auto t_start = std::chrono::steady_clock::now();
  const MachineSample run_before = SampleMachine();
  int n = 0;
  // Progress: one stderr line per record as it arrives (a rerun's records too).
  auto progress = [&](const BenchRecord& r) {
    std::string line = "[" + std::to_string(++n) + "] " + Shown(r) + " " +
                       (r.size ? r.pattern + " " + SizeName(r.size) : "(all cases)") + ": ";
    if (!r.error.empty()) {
      line += "ERROR " + r.error;
    } else if (r.pattern == "throughput" && r.msgs_per_s && r.bytes_per_s) {
      line += Rate(*r.msgs_per_s) + ", " + Bandwidth(*r.bytes_per_s);
    } else if (r.pattern == "rtt" && r.p50_ns && r.p99_ns) {
      line += "p50 " + Nanos(*r.p50_ns) + ", p99 " + Nanos(*r.p99_ns) +
              (r.p999_ns ? ", p99.9 " + Nanos(*r.p999_ns) : "");
    } else {
      line += "incomplete record";
    }
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  };
  // Keeping: the record goes to the JSON Lines file and the report.
  auto keep_record = [&](const BenchRecord& r) {
    if (json.is_open()) json << ToJsonLine(r) << "\n" << std::flush;
    if (!r.error.empty()) {
      res.failed.push_back(r);
    } else if ((r.pattern == "throughput" && r.msgs_per_s && r.bytes_per_s) ||
               (r.pattern == "rtt" && r.p50_ns && r.p99_ns)) {
      res.ok.push_back(r);
    }
  };
  std::vector<Measured> batch;
  MachineSample last = SampleMachine();
  Emit collect = [&](const BenchRecord& r) {
    if (!keep.empty() && !keep.count(BaseSystem(r.system))) return;
    const MachineSample now = SampleMachine();
    Measured m;
    m.rec = r;
    m.d = Between(last, now);
    batch.push_back(std::move(m));
    last = now;
    progress(r);
  };
  if (!report_from.empty()) {
    std::ifstream in(UserPath(report_from));
    if (!in) {
      std::fprintf(stderr, "compare: cannot read %s\n", report_from.c_str());
      return 2;
    }
    for (std::string line; std::getline(in, line);) {
      auto r = ParseJsonLine(line);
      if (!r || (!keep.empty() && !keep.count(BaseSystem(r->system)))) continue;
      progress(*r);
      keep_record(*r);
    }
    not_built.clear();
  } else {
    double measured_s = 0, rerun_s = 0;
    for (const Family* f : run) {
      std::fprintf(stderr, "compare: == %s ==\n", f->name);
      batch.clear();
      last = SampleMachine();
      const auto f_start = std::chrono::steady_clock::now();
      f->run(cfg, collect);
      measured_s += Seconds(f_start);
      std::vector<Measured> first = std::move(batch);
      // Rerun each size with a disturbed case once, while reruns stay within a third of
      // the time measured so far (a machine that is busy all along gains nothing from it).
      std::set<uint64_t> redo;
      for (const auto& m : first) {
        if (opt.rerun && m.rec.error.empty() && (m.d.Disturbed() || Spread(m.rec) > kShakySpread)) {
          redo.insert(m.rec.size);
        }
      }
      for (uint64_t size : redo) {
        if (rerun_s > measured_s / 3) {
          std::fprintf(stderr, "compare: rerun budget spent; %s %s stays as measured\n", f->name,
                       SizeName(size).c_str());
          continue;
        }
        std::fprintf(stderr, "compare: rerunning %s at %s (disturbed)\n", f->name,
                     SizeName(size).c_str());
        BenchConfig one = cfg;
        one.sizes = {size};
        batch.clear();
        last = SampleMachine();
        const auto r_start = std::chrono::steady_clock::now();
        f->run(one, collect);
        rerun_s += Seconds(r_start);
        for (auto& again : batch) AdoptRerun(first, std::move(again));
      }
      for (auto& m : first) {
        if (m.rec.error.empty() && (m.d.Disturbed() || Spread(m.rec) > kShakySpread || m.rerun)) {
          m.rec.note += std::string(m.rec.note.empty() ? "" : "; ") + m.Verdict();
          res.disturbed.push_back(m);
        }
        ++res.cases;
        keep_record(m.rec);
      }
    }
  }
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();

  const Disturbance whole = Between(run_before, SampleMachine());
  std::ostringstream md;
  md << "## shmlink vs. alternatives — " << UtcNow() << "\n\n"
     << "- Machine: " << machine << "\n"
     << "- Layout: two processes pinned to cores " << cfg.cpu_a << " and " << cfg.cpu_b
     << " (sched_setaffinity); " << cfg.reps << " repetitions × "
     << Fmt("%.2f", cfg.seconds_per_rep) << " s per case after a warm-up"
     << (cfg.quick ? " (--quick)" : "") << "; run took " << Fmt("%.0f", took) << " s\n";
  if (!report_from.empty()) md << "- Records read from " << report_from << " (not measured now)\n";
  md << "- Command: `bazel run -c opt //bench:compare";
  for (int i = 1; i < argc; ++i) md << (i == 1 ? " --" : "") << " " << argv[i];
  md << "`\n\n"
     << Summary(res) << "\n"
     << ThroughputTable(res) << "\n"
     << RttTable(res) << "\n"
     << PubsubTable(res) << "\n"
     << Targets(res) << "\n";
  if (report_from.empty()) md << DisturbanceSection(res, whole) << "\n";
  md << Failures(res, not_built);
  if (opt.plot) {
    std::string perr = Plot(res, opt.out_dir, machine);
    if (perr.empty()) {
      md << "\nPlots: " << opt.out_dir << "/throughput.png, " << opt.out_dir << "/rtt.png\n";
    } else {
      md << "\nPlots not rendered: " << perr << "\n";
    }
  }
  std::ofstream(opt.out_dir + "/compare.md") << md.str();
  std::printf("%s", md.str().c_str());
  std::fprintf(stderr, "compare: report in %s/compare.md%s\n", opt.out_dir.c_str(),
               opt.json_path.empty() ? "" : (", records in " + opt.json_path).c_str());
  return res.ok.empty() ? 1 : 0;
}

}  // namespace
}  // namespace shmlink::bench

int main(int argc, char** argv) { return shmlink::bench::Main(argc, argv); }
