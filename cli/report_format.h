// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Rendering of SegmentReports for the `shmlink` command: the human formats (a table for
// `list`, a block for `inspect`, a line per interval for `watch`) and their JSON
// counterparts. Pure functions of their inputs (no clock, no /proc), so golden tests can
// pin them byte for byte. JSON field names are the schema documented in docs/operations.md.
#ifndef SHMLINK_CLI_REPORT_FORMAT_H_
#define SHMLINK_CLI_REPORT_FORMAT_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/segment_report.h"

namespace shmlink::cli {

// "4096 B", "64 KiB", "1.5 MiB".
std::string HumanBytes(uint64_t n);
// "2026-12-05T07:21:24Z".
std::string IsoUtc(int64_t unix_seconds);
// "alive", "dead", "unknown".
const char* StateName(HolderState s) noexcept;
// "stale", "in use", "undecided", or the file class for files that are not segments.
std::string StatusWord(const SegmentReport& r);

// `list`: a header line, then one line per report.
std::string FormatList(const std::vector<SegmentReport>& reports);
// `inspect`: every field, counter and holder.
std::string FormatInspect(const SegmentReport& r);

// `list --json` element (summary) and `inspect --json` (detail = true: + counters).
nlohmann::json ReportJson(const SegmentReport& r, bool detail);

// What `watch` computes between two reports of the same segment `dt` seconds apart.
struct WatchSample {
  double ts = 0;  // unix time of the later report
  double dt = 0;
  uint64_t produced_msgs = 0, produced_bytes = 0;  // totals at the later report
  uint64_t consumed_msgs = 0, consumed_bytes = 0;
  double produced_msgs_per_s = 0, produced_bytes_per_s = 0;
  double consumed_msgs_per_s = 0, consumed_bytes_per_s = 0;
  double sleeps_per_s = 0, wakeups_per_s = 0, wake_calls_per_s = 0;
  uint64_t fill = 0, capacity = 0;
  uint32_t waiters = 0;
  uint64_t abandoned = 0, redelivered = 0, overruns = 0;
};
WatchSample MakeWatchSample(const SegmentReport& before, const SegmentReport& after, double dt,
                            double ts);
nlohmann::json WatchJson(const std::string& name, const WatchSample& s);
std::string FormatWatchHeader();
std::string FormatWatchLine(const WatchSample& s);

}  // namespace shmlink::cli

#endif  // SHMLINK_CLI_REPORT_FORMAT_H_
