// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The report of a //bench:compare run: the records it kept (Results), what the machine did
// while each was measured (Measured, and the rerun rule for disturbed cases), the figure
// formatting, and the Markdown sections (summary, throughput, round trip, publish/
// subscribe, targets, disturbance, not measured). compare.cc runs the families and puts
// the sections together. Thread safety: plain functions and values.
#ifndef SHMLINK_BENCH_COMPARE_REPORT_H_
#define SHMLINK_BENCH_COMPARE_REPORT_H_

#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "bench/bench_record.h"
#include "bench/machine_state.h"

namespace shmlink::bench {

// The reference every ratio is taken against.
inline constexpr const char* kReference = "shmlink-spsc";

// ---- Figures ------------------------------------------------------------------------------

// "iceoryx" for "iceoryx:waitset".
std::string BaseSystem(const std::string& s);
// The name a record is shown under: the system, plus "P→C" for multi-producer/consumer ones.
std::string Shown(const BenchRecord& r);
std::string Fmt(const char* f, double v);  // snprintf into a string
std::string Rate(double v);                // messages per second: "1.23 M/s"
std::string Bandwidth(double v);           // bytes per second: "1.23 GB/s"
std::string Nanos(double ns);              // "123 ns", "1.23 µs", ...
std::string SizeName(uint64_t s);          // "64 B", "4 KiB", "1 MiB"
std::string Ratio(double r);               // "×1.23", "×12"; "–" if not finite
// The record's extra figure `k` (e.g. "msgs_per_s_min"), NaN if absent.
double Extra(const BenchRecord& r, const std::string& k);

// ---- Disturbance --------------------------------------------------------------------------

double Seconds(std::chrono::steady_clock::time_point since);

// Repetitions that differ by more than this (max / min) make a case shaky.
inline constexpr double kShakySpread = 1.5;

// max / min over the repetitions of the record's headline figure (1 when unknown).
double Spread(const BenchRecord& r);

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

// The same system, pattern, size and process layout.
bool SameCase(const BenchRecord& a, const BenchRecord& b);

// Puts a rerun's record next to the first one of the same case: the rerun is kept when the
// machine was quiet for it and not for the first, or equally (un)disturbed and its
// repetitions agree better. Unflagged cases keep their first figures.
void AdoptRerun(std::vector<Measured>& first, Measured again);

// ---- Report -------------------------------------------------------------------------------

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

// The Markdown sections, each ending with a newline ("" when it has nothing to show).
std::string Summary(const Results& res);
std::string ThroughputTable(const Results& res);
std::string RttTable(const Results& res);
std::string PubsubTable(const Results& res);
std::string Targets(const Results& res);
std::string DisturbanceSection(const Results& res, const Disturbance& whole);
std::string Failures(const Results& res, const std::set<std::string>& not_built);

}  // namespace shmlink::bench

#endif  // SHMLINK_BENCH_COMPARE_REPORT_H_
