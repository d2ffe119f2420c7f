// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "cli/report_format.h"

#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <ctime>

namespace shmlink::cli {
namespace {

std::string Printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string Printf(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return buf;
}

std::string Rate(double v) {
  if (v >= 1e9) return Printf("%.2fG", v / 1e9);
  if (v >= 1e6) return Printf("%.2fM", v / 1e6);
  if (v >= 1e3) return Printf("%.2fk", v / 1e3);
  return Printf("%.1f", v);
}

// Holder summary for the list: "producer 1234 alive, consumer 1240 dead".
std::string HolderSummary(const SegmentReport& r) {
  std::string s;
  for (const Holder& h : r.holders) {
    if (!s.empty()) s += ", ";
    s += h.role + " " + std::to_string(h.pid) + " " + StateName(h.state);
  }
  return s.empty() ? "-" : s;
}

struct Totals {
  RoleCounts produced, consumed;
  uint32_t waiters = 0;
  uint64_t abandoned = 0, redelivered = 0;
};

Totals TotalsOf(const SegmentReport& r) {
  Totals t;
  for (const RingReport& ring : r.rings) {
    t.produced += ring.producer;
    t.consumed += ring.consumer;
    t.waiters += ring.data_waiters + ring.space_waiters;
  }
  if (r.queue) {
    t.produced += r.queue->produced;
    t.consumed += r.queue->consumed;
    t.waiters += r.queue->not_empty_waiters + r.queue->not_full_waiters;
    t.abandoned = r.queue->abandoned;
    t.redelivered = r.queue->redelivered;
  }
  return t;
}

nlohmann::json RoleJson(const RoleCounts& c) {
  return {{"messages", c.messages},  {"bytes", c.bytes},     {"waits", c.waits},
          {"sleeps", c.sleeps},      {"wakeups", c.wakeups}, {"wake_calls", c.wake_calls},
          {"takeovers", c.takeovers}};
}

std::string RoleLine(const char* label, const RoleCounts& c) {
  return Printf(
      "    %-9s messages %" PRIu64 "  bytes %" PRIu64 "  waits %" PRIu64 "  sleeps %" PRIu64
      "  wakeups %" PRIu64 "  wake_calls %" PRIu64 "  takeovers %" PRIu64 "\n",
      label, c.messages, c.bytes, c.waits, c.sleeps, c.wakeups, c.wake_calls, c.takeovers);
}

double PerS(uint64_t after, uint64_t before, double dt) {
  return dt > 0 && after >= before ? static_cast<double>(after - before) / dt : 0.0;
}

}  // namespace

std::string HumanBytes(uint64_t n) {
  static const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  if (n < 1024) return std::to_string(n) + " B";
  double v = static_cast<double>(n);
  int u = -1;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  const bool exact = n % (uint64_t{1} << (10 * (u + 1))) == 0;
  return exact ? Printf("%.0f %s", v, kUnits[u]) : Printf("%.1f %s", v, kUnits[u]);
}

std::string IsoUtc(int64_t unix_seconds) {
  const time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

const char* StateName(HolderState s) noexcept { return HolderStateName(s); }

std::string StatusWord(const SegmentReport& r) {
  if (r.stale) return "stale";
  const bool judged = r.cls == FileClass::kSegment || r.cls == FileClass::kOtherLayout ||
                      r.cls == FileClass::kIncomplete;
  if (judged && r.verdict.rfind("in use", 0) == 0) {
    return r.cls == FileClass::kSegment ? "in-use" : std::string(FileClassName(r.cls)) + ",in-use";
  }
  if (judged && r.verdict.rfind("undecided", 0) == 0) {
    return r.cls == FileClass::kSegment ? "undecided"
                                        : std::string(FileClassName(r.cls)) + ",undecided";
  }
  return FileClassName(r.cls);
}

std::string FormatList(const std::vector<SegmentReport>& reports) {
  std::string out = Printf("%-32s %-13s %3s %9s %9s %9s %-20s %-10s %s\n", "NAME", "KIND", "VER",
                           "SIZE", "CAPACITY", "FILL", "CREATED", "STATUS", "HOLDERS");
  for (const SegmentReport& r : reports) {
    const bool seg = r.cls == FileClass::kSegment;
    const std::string kind = r.version != 0 || seg ? r.kind_name : "-";
    const std::string ver = r.version != 0 ? std::to_string(r.version) : "-";
    std::string cap = "-", fill = "-";
    if (seg && r.queue) {
      cap = std::to_string(r.capacity) + " slots";
      fill = std::to_string(r.fill);
    } else if (seg && !r.rings.empty()) {
      cap = HumanBytes(r.capacity);
      fill = HumanBytes(r.fill);
    } else if (seg && r.object) {
      cap = HumanBytes(r.capacity);
    }
    std::string holders = HolderSummary(r);
    if (!seg && !r.problem.empty()) holders += " (" + r.problem + ")";
    out += Printf("%-32s %-13s %3s %9s %9s %9s %-20s %-10s %s\n", r.name.c_str(), kind.c_str(),
                  ver.c_str(), HumanBytes(r.file_size).c_str(), cap.c_str(), fill.c_str(),
                  IsoUtc(r.created_unix).c_str(), StatusWord(r).c_str(), holders.c_str());
  }
  return out;
}

std::string FormatInspect(const SegmentReport& r) {
  std::string out;
  out += Printf("name:       %s\n", r.name.c_str());
  out += Printf("status:     %s (%s)\n", StatusWord(r).c_str(), r.verdict.c_str());
  if (!r.problem.empty()) out += Printf("problem:    %s\n", r.problem.c_str());
  out += Printf("kind:       %s\n", r.version != 0 ? r.kind_name.c_str() : "-");
  out += Printf("layout:     version %u\n", r.version);
  out += Printf("file:       %s, mode %04o, uid %u, created %s\n", HumanBytes(r.file_size).c_str(),
                r.mode, r.uid, IsoUtc(r.created_unix).c_str());
  out += "holders:\n";
  if (r.holders.empty()) out += "    (none recorded)\n";
  for (const Holder& h : r.holders) {
    out += Printf("    %-18s pid %-8u %-8s %s\n", h.role.c_str(), h.pid, StateName(h.state),
                  h.why.c_str());
  }
  if (!r.mapped_by.empty()) {
    out += "mapped by:  pid";
    for (int pid : r.mapped_by) out += " " + std::to_string(pid);
    out += "\n";
  }
  for (const RingReport& ring : r.rings) {
    out += Printf(
        "ring %u:     capacity %s, write_pos %" PRIu64 ", read_pos %" PRIu64 ", fill %s%s%s\n",
        ring.index, HumanBytes(ring.capacity).c_str(), ring.write_pos, ring.read_pos,
        HumanBytes(ring.fill_bytes()).c_str(), ring.writer_closed ? ", writer closed" : "",
        ring.reader_closed ? ", reader closed" : "");
    out += Printf("    waiters   data %u  space %u\n", ring.data_waiters, ring.space_waiters);
    out += RoleLine("producer", ring.producer);
    out += RoleLine("consumer", ring.consumer);
  }
  if (r.queue) {
    const QueueReport& q = *r.queue;
    out += Printf("queue:      %" PRIu64 " slots of up to %s, enqueue_pos %" PRIu64
                  ", dequeue_pos %" PRIu64 ", fill %" PRIu64 "\n",
                  q.slot_count, HumanBytes(q.max_message_size).c_str(), q.enqueue_pos,
                  q.dequeue_pos, q.fill());
    out += Printf("    waiters   not_empty %u  not_full %u\n", q.not_empty_waiters,
                  q.not_full_waiters);
    out += Printf("    recovery  abandoned %" PRIu64 "  redelivered %" PRIu64 "  orphans %" PRIu64
                  "  recoveries %" PRIu64 "\n",
                  q.abandoned, q.redelivered, q.orphans, q.recoveries);
    for (const BlockingClaim& b : q.blocking) {
      out +=
          Printf("    blocked   %s wait behind position %" PRIu64 " (%s) of entry %u: pid %u, %s\n",
                 b.waiting.c_str(), b.position,
                 b.waiting == "consumers" ? "claimed, not published" : "held by a consumer",
                 b.entry, b.pid, b.state.c_str());
    }
    out += RoleLine("produced", q.produced);
    out += RoleLine("consumed", q.consumed);
  }
  if (r.object) {
    const ObjectReport& o = *r.object;
    out += Printf("object:     %s (%" PRIu64 " x %" PRIu64 " B), type_tag %" PRIu64
                  ", owner_died %" PRIu64 "\n",
                  HumanBytes(o.data_size).c_str(), o.elem_count, o.elem_size, o.type_tag,
                  o.owner_died_count);
  }
  return out;
}

nlohmann::json ReportJson(const SegmentReport& r, bool detail) {
  nlohmann::json j;
  j["name"] = r.name;
  j["class"] = FileClassName(r.cls);
  j["status"] = StatusWord(r);
  j["stale"] = r.stale;
  j["verdict"] = r.verdict;
  j["problem"] = r.problem;
  j["kind"] = r.version != 0 ? nlohmann::json(r.kind_name) : nlohmann::json(nullptr);
  j["version"] = r.version;
  j["size"] = r.file_size;
  j["capacity"] = r.capacity;
  j["fill"] = r.fill;
  j["created"] = IsoUtc(r.created_unix);
  j["mode"] = r.mode;
  j["uid"] = r.uid;
  j["mapped_by"] = r.mapped_by;
  nlohmann::json holders = nlohmann::json::array();
  for (const Holder& h : r.holders) {
    holders.push_back({{"role", h.role},
                       {"pid", h.pid},
                       {"start_ticks", h.start_ticks},
                       {"state", StateName(h.state)},
                       {"why", h.why}});
  }
  j["holders"] = holders;
  if (!detail) return j;
  nlohmann::json rings = nlohmann::json::array();
  for (const RingReport& ring : r.rings) {
    rings.push_back({{"index", ring.index},
                     {"capacity", ring.capacity},
                     {"write_pos", ring.write_pos},
                     {"read_pos", ring.read_pos},
                     {"fill", ring.fill_bytes()},
                     {"writer_closed", ring.writer_closed},
                     {"reader_closed", ring.reader_closed},
                     {"data_waiters", ring.data_waiters},
                     {"space_waiters", ring.space_waiters},
                     {"producer", RoleJson(ring.producer)},
                     {"consumer", RoleJson(ring.consumer)}});
  }
  j["rings"] = rings;
  if (r.queue) {
    const QueueReport& q = *r.queue;
    j["queue"] = {{"slot_count", q.slot_count},
                  {"max_message_size", q.max_message_size},
                  {"enqueue_pos", q.enqueue_pos},
                  {"dequeue_pos", q.dequeue_pos},
                  {"fill", q.fill()},
                  {"abandoned", q.abandoned},
                  {"redelivered", q.redelivered},
                  {"orphans", q.orphans},
                  {"recoveries", q.recoveries},
                  {"not_empty_waiters", q.not_empty_waiters},
                  {"not_full_waiters", q.not_full_waiters},
                  {"produced", RoleJson(q.produced)},
                  {"consumed", RoleJson(q.consumed)}};
    nlohmann::json blocking = nlohmann::json::array();
    for (const BlockingClaim& b : q.blocking) {
      blocking.push_back({{"waiting", b.waiting},
                          {"position", b.position},
                          {"entry", b.entry},
                          {"pid", b.pid},
                          {"state", b.state}});
    }
    j["queue"]["blocking"] = blocking;
  } else {
    j["queue"] = nullptr;
  }
  if (r.object) {
    const ObjectReport& o = *r.object;
    j["object"] = {{"data_size", o.data_size},
                   {"elem_size", o.elem_size},
                   {"elem_count", o.elem_count},
                   {"type_tag", o.type_tag},
                   {"owner_died_count", o.owner_died_count}};
  } else {
    j["object"] = nullptr;
  }
  return j;
}

WatchSample MakeWatchSample(const SegmentReport& before, const SegmentReport& after, double dt,
                            double ts) {
  const Totals a = TotalsOf(before), b = TotalsOf(after);
  WatchSample s;
  s.ts = ts;
  s.dt = dt;
  s.produced_msgs = b.produced.messages;
  s.produced_bytes = b.produced.bytes;
  s.consumed_msgs = b.consumed.messages;
  s.consumed_bytes = b.consumed.bytes;
  s.produced_msgs_per_s = PerS(b.produced.messages, a.produced.messages, dt);
  s.produced_bytes_per_s = PerS(b.produced.bytes, a.produced.bytes, dt);
  s.consumed_msgs_per_s = PerS(b.consumed.messages, a.consumed.messages, dt);
  s.consumed_bytes_per_s = PerS(b.consumed.bytes, a.consumed.bytes, dt);
  s.sleeps_per_s =
      PerS(b.produced.sleeps + b.consumed.sleeps, a.produced.sleeps + a.consumed.sleeps, dt);
  s.wakeups_per_s =
      PerS(b.produced.wakeups + b.consumed.wakeups, a.produced.wakeups + a.consumed.wakeups, dt);
  s.wake_calls_per_s = PerS(b.produced.wake_calls + b.consumed.wake_calls,
                            a.produced.wake_calls + a.consumed.wake_calls, dt);
  s.fill = after.fill;
  s.capacity = after.capacity;
  s.waiters = b.waiters;
  s.abandoned = b.abandoned;
  s.redelivered = b.redelivered;
  s.overruns = 0;  // rings and queues are lossless: a full one makes the writer wait
  return s;
}

nlohmann::json WatchJson(const std::string& name, const WatchSample& s) {
  return {{"name", name},
          {"ts", s.ts},
          {"interval", s.dt},
          {"produced_msgs", s.produced_msgs},
          {"produced_bytes", s.produced_bytes},
          {"consumed_msgs", s.consumed_msgs},
          {"consumed_bytes", s.consumed_bytes},
          {"produced_msgs_per_s", s.produced_msgs_per_s},
          {"produced_bytes_per_s", s.produced_bytes_per_s},
          {"consumed_msgs_per_s", s.consumed_msgs_per_s},
          {"consumed_bytes_per_s", s.consumed_bytes_per_s},
          {"sleeps_per_s", s.sleeps_per_s},
          {"wakeups_per_s", s.wakeups_per_s},
          {"wake_calls_per_s", s.wake_calls_per_s},
          {"fill", s.fill},
          {"capacity", s.capacity},
          {"waiters", s.waiters},
          {"abandoned", s.abandoned},
          {"redelivered", s.redelivered},
          {"overruns", s.overruns}};
}

std::string FormatWatchHeader() {
  return Printf("%-20s %10s %10s %10s %10s %10s %8s %10s %7s %9s\n", "TIME", "IN msg/s", "IN B/s",
                "OUT msg/s", "OUT B/s", "FILL", "WAITERS", "wakeups/s", "DROPS", "REDELIV");
}

std::string FormatWatchLine(const WatchSample& s) {
  return Printf("%-20s %10s %10s %10s %10s %10" PRIu64 " %8u %10s %7" PRIu64 " %9" PRIu64 "\n",
                IsoUtc(static_cast<int64_t>(s.ts)).c_str(), Rate(s.produced_msgs_per_s).c_str(),
                Rate(s.produced_bytes_per_s).c_str(), Rate(s.consumed_msgs_per_s).c_str(),
                Rate(s.consumed_bytes_per_s).c_str(), s.fill, s.waiters,
                Rate(s.wakeups_per_s).c_str(), s.abandoned, s.redelivered);
}

}  // namespace shmlink::cli
