// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "bench/compare_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace shmlink::bench {

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

// ---- Disturbance -----------------------------------------------------------------------------

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// max / min over the repetitions of the record's headline figure (1 when unknown).
double Spread(const BenchRecord& r) {
  const char* k = r.pattern == "rtt" ? "p50_ns" : "msgs_per_s";
  const double lo = Extra(r, std::string(k) + "_min"), hi = Extra(r, std::string(k) + "_max");
  return lo > 0 && hi >= lo ? hi / lo : 1;
}

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

namespace {

// The sizes measured for `pat`, among one-to-one records or among topic records.
std::vector<uint64_t> SizesOf(const Results& res, const std::string& pat, bool topics = false) {
  std::set<uint64_t> s;
  for (const auto& r : res.ok) {
    if (r.pattern == pat && r.subscribers.has_value() == topics) s.insert(r.size);
  }
  return {s.begin(), s.end()};
}

}  // namespace

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

namespace {

bool IsPeer(const std::string& sys) {
  return !sys.starts_with("shmlink") && !sys.starts_with("floor") && !sys.starts_with("python-");
}

}  // namespace

namespace {

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

}  // namespace

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

}  // namespace shmlink::bench
