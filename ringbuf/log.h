// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Lifecycle log: one line on stderr per event that an operator may want to see (a segment
// created, attached, a role taken over from a dead holder, a peer found dead, corruption
// detected, a stale segment removed), each naming the segment. Controlled by the
// environment variable SHMLINK_LOG, read once per process:
//
//   unset, "", "off"   silent (the default)
//   "info"             lifecycle events
//   "debug"            also attach/detach details and recoveries that found nothing
//
// Line format:  shmlink[<pid>] <level> <event> <segment>: <detail>
//
// Never called on the data path (commit/release/claim/publish): only where a segment is
// created, attached, recovered or removed, and where a call returns a terminal error.
// Thread safety: any-thread (one write(2) per line, so lines of concurrent callers do not
// interleave).
#ifndef SHMLINK_RINGBUF_LOG_H_
#define SHMLINK_RINGBUF_LOG_H_

#include <string_view>

namespace shmlink {

enum class LogLevel { kOff = 0, kInfo = 1, kDebug = 2 };

// The level SHMLINK_LOG asked for (parsed at the first call; unknown values mean kOff).
LogLevel CurrentLogLevel() noexcept;

inline bool LogEnabled(LogLevel level) noexcept {
  return level != LogLevel::kOff && static_cast<int>(CurrentLogLevel()) >= static_cast<int>(level);
}

// Writes one event line if `level` is enabled. `segment` is the shm name (empty: an
// anonymous segment, printed as "(memfd)"). `fmt` is printf-style; the line is cut at
// 512 bytes.
void LogEvent(LogLevel level, std::string_view event, std::string_view segment, const char* fmt,
              ...) noexcept __attribute__((format(printf, 4, 5)));

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_LOG_H_
