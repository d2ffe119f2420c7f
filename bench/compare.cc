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
#include "bench/harness.h"
#include "bench/machine_state.h"
#include "bench/run_command.h"
#include "bench/source_tree.h"

namespace shmlink::bench {
namespace {

namespace fs = std::filesystem;

// The reference every ratio is taken against.
constexpr const char* kReference = "shmlink-spsc";

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

// ---- Small helpers -------------------------------------------------------------------------

std::string BaseSystem(const std::string& s) { return s.substr(0, s.find(':')); }

// The name a record is shown under: the system, plus "P→C" for multi-producer/consumer ones.
std::string Shown(const BenchRecord& r) {
  if (r.subscribers) return r.system + " ×" + std::to_string(*r.subscribers) + " sub";
  if (r.producers && r.consumers && (*r.producers != 1 || *r.consumers != 1)) {
    return r.system + " " + std::to_string(*r.producers) + "→" + std::to_string(*r.consumers);
  }
  return r.system;
}

std::string Fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string Rate(double v) {  // messages per second
  if (!std::isfinite(v)) return "–";
  if (v >= 1e6) return Fmt("%.2f M/s", v / 1e6);
  if (v >= 1e3) return Fmt("%.1f k/s", v / 1e3);
  return Fmt("%.0f /s", v);
}
std::string Bandwidth(double v) {
  if (!std::isfinite(v)) return "–";
  if (v >= 1e9) return Fmt("%.2f GB/s", v / 1e9);
  return Fmt("%.0f MB/s", v / 1e6);
}
std::string Nanos(double ns) {
  if (!std::isfinite(ns)) return "–";
  if (ns >= 1e6) return Fmt("%.2f ms", ns / 1e6);
  if (ns >= 1e4) return Fmt("%.1f µs", ns / 1e3);
  if (ns >= 1e3) return Fmt("%.2f µs", ns / 1e3);
  return Fmt("%.0f ns", ns);
}
std::string SizeName(uint64_t s) {
  if (s >= (1u << 20) && s % (1u << 20) == 0) return std::to_string(s >> 20) + " MiB";
  if (s >= 1024 && s % 1024 == 0) return std::to_string(s >> 10) + " KiB";
  return std::to_string(s) + " B";
}
std::string Ratio(double r) {
  if (!(r > 0) || !std::isfinite(r)) return "–";
  return r >= 10 ? Fmt("×%.0f", r) : Fmt("×%.2f", r);
}
double Extra(const BenchRecord& r, const std::string& k) {
  auto it = r.extra.find(k);
  return it == r.extra.end() ? NAN : it->second;
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

// ---- Report ----------------------------------------------------------------------------------

// ---- Disturbance -----------------------------------------------------------------------------

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// Repetitions that differ by more than this (max / min) make a case shaky.
constexpr double kShakySpread = 1.5;

// max / min over the repetitions of the record's headline figure (1 when unknown).
double Spread(const BenchRecord& r) {
  const char* k = r.pattern == "rtt" ? "p50_ns" : "msgs_per_s";
  const double lo = Extra(r, std::string(k) + "_min"), hi = Extra(r, std::string(k) + "_max");
  return lo > 0 && hi >= lo ? hi / lo : 1;
}

// A record and what the machine did while it was measured.
struct Measured {
  BenchRecord rec;
  Disturbance d;
  bool rerun = false;       // its size was measured again
  bool kept_rerun = false;  // ... and the rerun's figures were kept
  std::string other;        // the state of the measurement that was not kept

  bool Flagged() const { return d.Disturbed() || Spread(rec) > kShakySpread; }
  std::string State() const { return d.Describe() + ", spread " + Ratio(Spread(rec)); }
  std::string Verdict() const {
    std::string v = d.Disturbed()                ? "disturbed: "
                    : Spread(rec) > kShakySpread ? "shaky: "
                                                 : "quiet: ";
    v += State();
    if (rerun) {
      v += kept_rerun ? "; rerun kept (first run: " + other + ")"
                      : "; first run kept (rerun: " + other + ")";
    }
    return v;
  }
};

bool SameCase(const BenchRecord& a, const BenchRecord& b) {
  return a.system == b.system && a.pattern == b.pattern && a.size == b.size &&
         a.producers == b.producers && a.consumers == b.consumers && a.subscribers == b.subscribers;
}

// Puts a rerun's record next to the first one of the same case: the rerun is kept when the
// machine was quiet for it and not for the first, or equally (un)disturbed and its
// repetitions agree better. Unflagged cases keep their first figures.
void AdoptRerun(std::vector<Measured>& first, Measured again) {
  for (auto& m : first) {
    if (!SameCase(m.rec, again.rec) || m.rerun || !m.Flagged()) continue;
    m.rerun = true;
    if (!again.rec.error.empty()) {
      m.other = "failed: " + again.rec.error;
      return;
    }
    const bool quieter = m.d.Disturbed() && !again.d.Disturbed();
    const bool tighter =
        m.d.Disturbed() == again.d.Disturbed() && Spread(again.rec) < Spread(m.rec);
    if (quieter || tighter) {
      m.other = m.State();
      m.rec = std::move(again.rec);
      m.d = again.d;
      m.kept_rerun = true;
    } else {
      m.other = again.State();
    }
    return;
  }
}

struct Results {
  std::vector<BenchRecord> ok, failed;
  std::vector<Measured> disturbed;  // flagged or rerun cases, as kept
  int cases = 0;                    // cases measured in this run
  // One-to-one records only: topic records (with subscribers) are found with FindTopic.
  const BenchRecord* Find(const std::string& sys, const std::string& pat, uint64_t size) const {
    for (const auto& r : ok) {
      if (r.system == sys && r.pattern == pat && r.size == size && !r.subscribers) return &r;
    }
    return nullptr;
  }
  const BenchRecord* FindTopic(const std::string& sys, const std::string& pat, uint64_t size,
                               int subscribers) const {
    for (const auto& r : ok) {
      if (r.system == sys && r.pattern == pat && r.size == size && r.subscribers == subscribers) {
        return &r;
      }
    }
    return nullptr;
  }
  // The record for `sys`/`pat` whose size is `size` or else the largest one (floors may be
  // measured at one size only).
  const BenchRecord* FindNear(const std::string& sys, const std::string& pat, uint64_t size) const {
    if (auto* r = Find(sys, pat, size)) return r;
    const BenchRecord* best = nullptr;
    for (const auto& r : ok) {
      if (r.system == sys && r.pattern == pat && !r.subscribers && (!best || r.size > best->size)) {
        best = &r;
      }
    }
    return best;
  }
};

// The sizes measured for `pat`, among one-to-one records or among topic records.
std::vector<uint64_t> SizesOf(const Results& res, const std::string& pat, bool topics = false) {
  std::set<uint64_t> s;
  for (const auto& r : res.ok) {
    if (r.pattern == pat && r.subscribers.has_value() == topics) s.insert(r.size);
  }
  return {s.begin(), s.end()};
}

std::string ThroughputTable(const Results& res) {
  std::ostringstream o;
  o << "### Throughput (one sender, one receiver unless P→C is shown; median of reps, "
       "[min–max])\n\n"
    << "\"vs shmlink\" = shmlink-spsc's msgs/s ÷ the system's (above 1: shmlink is faster).\n\n"
    << "| size | system | msgs/s | bandwidth | msgs/s min–max | vs shmlink |\n"
    << "|---|---|---:|---:|---:|---:|\n";
  for (uint64_t size : SizesOf(res, "throughput")) {
    std::vector<const BenchRecord*> rows;
    for (const auto& r : res.ok) {
      if (r.pattern == "throughput" && r.size == size && !r.subscribers) rows.push_back(&r);
    }
    std::sort(rows.begin(), rows.end(),
              [](auto* a, auto* b) { return *a->msgs_per_s > *b->msgs_per_s; });
    const BenchRecord* ref = res.Find(kReference, "throughput", size);
    for (const auto* r : rows) {
      o << "| " << SizeName(size) << " | "
        << (r->system == kReference ? "**" + r->system + "**" : Shown(*r)) << " | "
        << Rate(*r->msgs_per_s) << " | " << Bandwidth(*r->bytes_per_s) << " | "
        << Rate(Extra(*r, "msgs_per_s_min")) << " – " << Rate(Extra(*r, "msgs_per_s_max")) << " | "
        << (ref ? Ratio(*ref->msgs_per_s / *r->msgs_per_s) : "–") << " |\n";
    }
  }
  return o.str();
}

std::string RttTable(const Results& res) {
  std::ostringstream o;
  o << "### Round trip (ping-pong; median of reps' percentiles, p50 [min–max])\n\n"
    << "\"vs shmlink\" = the system's p50 ÷ shmlink-spsc's p50 (above 1: shmlink is faster).\n\n"
    << "| size | system | p50 | p99 | p99.9 | p50 min–max | vs shmlink |\n"
    << "|---|---|---:|---:|---:|---:|---:|\n";
  for (uint64_t size : SizesOf(res, "rtt")) {
    std::vector<const BenchRecord*> rows;
    for (const auto& r : res.ok) {
      if (r.pattern == "rtt" && r.size == size && !r.subscribers) rows.push_back(&r);
    }
    std::sort(rows.begin(), rows.end(), [](auto* a, auto* b) { return *a->p50_ns < *b->p50_ns; });
    const BenchRecord* ref = res.Find(kReference, "rtt", size);
    for (const auto* r : rows) {
      o << "| " << SizeName(size) << " | "
        << (r->system == kReference ? "**" + r->system + "**" : Shown(*r)) << " | "
        << Nanos(*r->p50_ns) << " | " << Nanos(*r->p99_ns) << " | "
        << (r->p999_ns ? Nanos(*r->p999_ns) : "–") << " | " << Nanos(Extra(*r, "p50_ns_min"))
        << " – " << Nanos(Extra(*r, "p50_ns_max")) << " | "
        << (ref ? Ratio(*r->p50_ns / *ref->p50_ns) : "–") << " |\n";
    }
  }
  return o.str();
}

// Publish/subscribe: shmlink's topic against iceoryx's publish/subscribe, per subscriber
// count, both wait styles side by side (spinning / busy-polling, sleeping / WaitSet).
std::string PubsubTable(const Results& res) {
  if (SizesOf(res, "throughput", true).empty() && SizesOf(res, "rtt", true).empty()) return "";
  std::ostringstream o;
  auto cell = [](const BenchRecord* r, bool tp) {
    if (!r) return std::string("–");
    return tp ? Rate(*r->msgs_per_s) : Nanos(*r->p50_ns);
  };
  // shmlink ÷ iceoryx for rates, iceoryx ÷ shmlink for latencies: above 1, shmlink is faster.
  auto ratio = [](const BenchRecord* s, const BenchRecord* i, bool tp) {
    if (!s || !i) return std::string("–");
    return Ratio(tp ? *s->msgs_per_s / *i->msgs_per_s : *i->p50_ns / *s->p50_ns);
  };
  o << "### Publish/subscribe (one publisher, N subscriber processes; median of reps)\n\n"
    << "Throughput is the slowest subscriber's msgs/s; RTT goes through subscriber 0 while the "
       "others consume too. \"spin\": shmlink subscribers spin, iceoryx subscribers busy-poll "
       "take(); \"sleep\": shmlink subscribers sleep on the futex, iceoryx subscribers wait in "
       "a WaitSet. \"×\" columns: above 1, shmlink is faster. \"publish\": the publisher's own "
       "rate with N attached subscribers that do not read (the cost of one publish).\n\n"
    << "| pattern | size | N | shmlink spin | iceoryx poll | × | shmlink sleep | iceoryx "
       "WaitSet | × | publish |\n"
    << "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const char* pat : {"throughput", "rtt"}) {
    const bool tp = std::string(pat) == "throughput";
    for (uint64_t size : SizesOf(res, pat, true)) {
      for (int n : {1, 2, 4, 64}) {
        const BenchRecord* spin = res.FindTopic("shmlink-pubsub", pat, size, n);
        const BenchRecord* poll = res.FindTopic("iceoryx", pat, size, n);
        const BenchRecord* sleep = res.FindTopic("shmlink-pubsub:sleep", pat, size, n);
        const BenchRecord* ws = res.FindTopic("iceoryx:waitset", pat, size, n);
        const BenchRecord* publish =
            tp ? res.FindTopic("shmlink-pubsub:publish", pat, size, n) : nullptr;
        if (!spin && !poll && !sleep && !ws && !publish) continue;
        o << "| " << pat << " | " << SizeName(size) << " | " << n << " | " << cell(spin, tp)
          << " | " << cell(poll, tp) << " | " << ratio(spin, poll, tp) << " | " << cell(sleep, tp)
          << " | " << cell(ws, tp) << " | " << ratio(sleep, ws, tp) << " | " << cell(publish, true)
          << " |\n";
      }
    }
  }
  return o.str();
}

std::string Targets(const Results& res) {
  std::ostringstream o;
  o << "### Targets (same run)\n\n| target | measured | result |\n|---|---|---|\n";
  auto row = [&](const std::string& what, const std::string& measured, int verdict) {
    o << "| " << what << " | " << measured << " | "
      << (verdict < 0 ? "n/a (not measured)"
          : verdict   ? "met"
                      : "**missed**")
      << " |\n";
  };
  const BenchRecord* s_rtt = res.Find(kReference, "rtt", 64);
  const BenchRecord* s_tp = res.Find(kReference, "throughput", 64);
  for (const char* peer : {"iceoryx", "boost-message-queue"}) {
    const BenchRecord* p_rtt = res.Find(peer, "rtt", 64);
    if (s_rtt && p_rtt) {
      row(std::string("RTT p50 at 64 B below ") + peer,
          Nanos(*s_rtt->p50_ns) + " vs " + Nanos(*p_rtt->p50_ns), *s_rtt->p50_ns < *p_rtt->p50_ns);
    } else {
      row(std::string("RTT p50 at 64 B below ") + peer, "–", -1);
    }
    const BenchRecord* p_tp = res.Find(peer, "throughput", 64);
    if (s_tp && p_tp) {
      row(std::string("64 B throughput above ") + peer,
          Rate(*s_tp->msgs_per_s) + " vs " + Rate(*p_tp->msgs_per_s),
          *s_tp->msgs_per_s > *p_tp->msgs_per_s);
    } else {
      row(std::string("64 B throughput above ") + peer, "–", -1);
    }
  }
  const BenchRecord* sp = res.Find("unix-socketpair", "throughput", 64);
  if (s_tp && sp) {
    double r = *s_tp->msgs_per_s / *sp->msgs_per_s;
    row("64 B throughput ≥ 20× unix-socketpair", Ratio(r), r >= 20);
  } else {
    row("64 B throughput ≥ 20× unix-socketpair", "–", -1);
  }
  const BenchRecord* cl = res.FindNear("floor-cacheline", "rtt", 64);
  if (s_rtt && cl) {
    double r = *s_rtt->p50_ns / *cl->p50_ns;
    row("RTT p50 (64 B) ≤ 2× cache-line floor",
        Nanos(*s_rtt->p50_ns) + " vs " + Nanos(*cl->p50_ns) + " = " + Ratio(r), r <= 2);
  } else {
    row("RTT p50 (64 B) ≤ 2× cache-line floor", "–", -1);
  }
  const BenchRecord* s_mb = res.Find(kReference, "throughput", 1 << 20);
  const BenchRecord* mc = res.FindNear("floor-memcpy", "throughput", 1 << 20);
  if (s_mb && mc) {
    double r = *s_mb->bytes_per_s / *mc->bytes_per_s;
    row("1 MiB bandwidth ≥ 0.8× memcpy floor",
        Bandwidth(*s_mb->bytes_per_s) + " vs " + Bandwidth(*mc->bytes_per_s) + " = " + Ratio(r),
        r >= 0.8);
  } else {
    row("1 MiB bandwidth ≥ 0.8× memcpy floor", "–", -1);
  }
  // Against the transfer and stream floors of the same run.
  const BenchRecord* s_64 = res.Find(kReference, "throughput", 64);
  const BenchRecord* fs = res.Find("floor-stream", "throughput", 64);
  if (s_64 && fs) {
    const double r = *s_64->msgs_per_s / *fs->msgs_per_s;
    row("64 B throughput ≥ 0.8× floor-stream",
        Rate(*s_64->msgs_per_s) + " vs " + Rate(*fs->msgs_per_s) + " = " + Ratio(r), r >= 0.8);
  } else {
    row("64 B throughput ≥ 0.8× floor-stream", "–", -1);
  }
  for (const uint64_t size : {uint64_t{64} << 10, uint64_t{1} << 20}) {
    const std::string what =
        std::string(size == (64 << 10) ? "64 KiB" : "1 MiB") + " bandwidth ≥ 0.8× floor-transfer";
    const BenchRecord* s_b = res.Find(kReference, "throughput", size);
    const BenchRecord* ft = res.Find("floor-transfer", "throughput", size);
    if (s_b && ft) {
      const double r = *s_b->bytes_per_s / *ft->bytes_per_s;
      row(what,
          Bandwidth(*s_b->bytes_per_s) + " vs " + Bandwidth(*ft->bytes_per_s) + " = " + Ratio(r),
          r >= 0.8);
    } else if (res.Find(kReference, "throughput", size)) {
      row(what, "–", -1);
    }
  }
  // Publish/subscribe.
  for (const auto& [ours, theirs] :
       {std::pair<const char*, const char*>{"shmlink-pubsub", "iceoryx"},
        {"shmlink-pubsub:sleep", "iceoryx:waitset"}}) {
    const std::string what =
        std::string("pub/sub 64 B, 4 subscribers: slowest ≥ 10× ") + theirs + " (" + ours + ")";
    const BenchRecord* a = res.FindTopic(ours, "throughput", 64, 4);
    const BenchRecord* b = res.FindTopic(theirs, "throughput", 64, 4);
    if (a && b) {
      const double r = *a->msgs_per_s / *b->msgs_per_s;
      row(what, Rate(*a->msgs_per_s) + " vs " + Rate(*b->msgs_per_s) + " = " + Ratio(r), r >= 10);
    } else {
      row(what, "–", -1);
    }
  }
  const BenchRecord* p1 = res.FindTopic("shmlink-pubsub:publish", "throughput", 64, 1);
  const BenchRecord* p4 = res.FindTopic("shmlink-pubsub:publish", "throughput", 64, 4);
  if (p1 && p4) {
    const double r = *p4->msgs_per_s / *p1->msgs_per_s;
    row("pub/sub publish cost flat from 1 to 4 subscribers (within 20 %, 64 B)",
        Rate(*p1->msgs_per_s) + " vs " + Rate(*p4->msgs_per_s) + " = " + Ratio(r),
        r >= 0.8 && r <= 1.25);
  } else {
    row("pub/sub publish cost flat from 1 to 4 subscribers (within 20 %, 64 B)", "–", -1);
  }
  const BenchRecord* t_rtt = res.FindTopic("shmlink-pubsub", "rtt", 64, 1);
  if (t_rtt && s_rtt) {
    const double r = *t_rtt->p50_ns / *s_rtt->p50_ns;
    row("pub/sub RTT p50 (64 B, 1 subscriber) ≤ 1.5× shmlink-spsc",
        Nanos(*t_rtt->p50_ns) + " vs " + Nanos(*s_rtt->p50_ns) + " = " + Ratio(r), r <= 1.5);
  } else {
    row("pub/sub RTT p50 (64 B, 1 subscriber) ≤ 1.5× shmlink-spsc", "–", -1);
  }
  return o.str();
}

// ---- Summary ---------------------------------------------------------------------------------

bool IsPeer(const std::string& sys) {
  return !sys.starts_with("shmlink") && !sys.starts_with("floor") && !sys.starts_with("python-");
}

// The best one-to-one peer record for `pat`/`size`: most msgs/s, or lowest RTT p50.
const BenchRecord* BestPeer(const Results& res, const std::string& pat, uint64_t size) {
  const BenchRecord* best = nullptr;
  for (const auto& r : res.ok) {
    if (r.pattern != pat || r.size != size || r.subscribers || !IsPeer(r.system)) continue;
    if (r.producers.value_or(1) != 1 || r.consumers.value_or(1) != 1) continue;
    const bool better =
        !best || (pat == "rtt" ? *r.p50_ns < *best->p50_ns : *r.msgs_per_s > *best->msgs_per_s);
    if (better) best = &r;
  }
  return best;
}

// One screen: each shmlink primitive against its floor and against the best peer measured.
std::string Summary(const Results& res) {
  std::ostringstream o;
  o << "### Summary\n\n"
       "\"of floor\": the share of the hardware floor reached (throughput ÷ floor, or floor "
       "RTT ÷ RTT; 1 is the floor). \"vs best peer\": shmlink's advantage over the fastest "
       "other system measured at that size (above 1: shmlink is faster).\n\n"
       "| primitive | case | shmlink | of floor | vs best peer |\n|---|---|---:|---:|---|\n";
  int rows = 0;
  auto row = [&](const std::string& prim, const std::string& what, const BenchRecord* ours,
                 const BenchRecord* floor, const BenchRecord* peer, bool bandwidth) {
    if (!ours) return;
    const bool rtt = ours->pattern == "rtt";
    auto fig = [&](const BenchRecord& r) {
      return rtt ? Nanos(*r.p50_ns) : bandwidth ? Bandwidth(*r.bytes_per_s) : Rate(*r.msgs_per_s);
    };
    auto adv = [&](const BenchRecord& r) {  // ours relative to r, above 1: ours is better
      return rtt ? *r.p50_ns / *ours->p50_ns : *ours->msgs_per_s / *r.msgs_per_s;
    };
    o << "| " << prim << " | " << what << " | " << fig(*ours) << " | "
      << (floor ? Ratio(adv(*floor)) + " (" + BaseSystem(floor->system) + ")" : "–") << " | "
      << (peer ? Ratio(adv(*peer)) + " (" + Shown(*peer) + ")" : "–") << " |\n";
    ++rows;
  };
  for (const uint64_t size : {uint64_t{64}, uint64_t{65536}, uint64_t{1} << 20}) {
    const bool big = size > 4096;
    row("SPSC ring", SizeName(size) + " throughput", res.Find(kReference, "throughput", size),
        res.Find(big ? "floor-transfer" : "floor-stream", "throughput", size),
        BestPeer(res, "throughput", size), big);
  }
  row("SPSC ring", "64 B RTT p50", res.Find(kReference, "rtt", 64),
      res.FindNear("floor-cacheline", "rtt", 64), BestPeer(res, "rtt", 64), false);
  row("Connection", "64 B RTT p50", res.Find("shmlink-connection", "rtt", 64),
      res.FindNear("floor-cacheline", "rtt", 64), BestPeer(res, "rtt", 64), false);
  for (const auto& r : res.ok) {
    if (r.system != "shmlink-mpmc" || r.pattern != "throughput" || r.size != 64) continue;
    BenchRecord key = r;  // the mutex queue's record of the same layout and size
    key.system = "mutex-queue";
    const BenchRecord* mq = nullptr;
    for (const auto& q : res.ok) {
      if (SameCase(q, key)) mq = &q;
    }
    const std::string layout =
        std::to_string(r.producers.value_or(1)) + "→" + std::to_string(r.consumers.value_or(1));
    row("MPMC queue", "64 B " + layout + " throughput", &r, nullptr, mq, false);
  }
  row("Topic", "64 B, 4 subscribers: slowest", res.FindTopic("shmlink-pubsub", "throughput", 64, 4),
      nullptr, res.FindTopic("iceoryx", "throughput", 64, 4), false);
  if (rows == 0) return "";
  return o.str();
}

// Which cases the machine disturbed, and what the rerun did about it.
std::string DisturbanceSection(const Results& res, const Disturbance& whole) {
  std::ostringstream o;
  o << "### Was the run disturbed?\n\n"
       "Each case is bracketed by samples of /proc/stat and /proc/loadavg. A case is "
       "*disturbed* when steal exceeds 5 % of cpu time (the hypervisor ran another guest "
       "on our vCPUs) or processes other than the benchmark's used more than 10 % of it, and "
       "*shaky* when its repetitions differ by more than ×"
    << Fmt("%.1f", kShakySpread)
    << "; such a size is measured once more (within a third of the measuring time) and the "
       "better measurement is kept.\n\n"
    << "Whole run: " << whole.Describe() << " over " << Fmt("%.0f", whole.seconds) << " s; "
    << res.disturbed.size() << " of " << res.cases << " cases flagged or rerun.\n";
  if (res.disturbed.empty()) return o.str();
  o << "\n| case | size | kept measurement |\n|---|---|---|\n";
  for (const auto& m : res.disturbed) {
    o << "| " << Shown(m.rec) << " " << m.rec.pattern << " | " << SizeName(m.rec.size) << " | "
      << m.Verdict() << " |\n";
  }
  return o.str();
}

std::string Failures(const Results& res, const std::set<std::string>& not_built) {
  std::ostringstream o;
  if (res.failed.empty() && not_built.empty()) return "";
  o << "### Not measured\n\n| system | case | reason |\n|---|---|---|\n";
  for (const auto& r : res.failed) {
    std::string e = r.error;
    std::replace(e.begin(), e.end(), '|', '/');
    std::replace(e.begin(), e.end(), '\n', ' ');
    const std::string which = r.size ? r.pattern + " " + SizeName(r.size) : "all";
    o << "| " << Shown(r) << " | " << which << " | " << e << " |\n";
  }
  for (const auto& s : not_built) {
    o << "| " << s << " | all | not built into this binary (see bench/compare.cc Families()) |\n";
  }
  return o.str();
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
