// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The bridge's log: one line per event on stderr,
//   "shmlink-bridge[<pid>] <level>: <message>"
// Level from the environment variable SHMLINK_LOG (error, warn, info, debug; default
// info). Thread safety: any-thread (one write(2) per line).
#ifndef SHMLINK_BRIDGE_LOG_H_
#define SHMLINK_BRIDGE_LOG_H_

namespace shmlink::bridge {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

// True if lines of `level` are written.
bool LogEnabled(LogLevel level) noexcept;
// printf-style; the line ends with a newline added here.
void Log(LogLevel level, const char* fmt, ...) noexcept __attribute__((format(printf, 2, 3)));

}  // namespace shmlink::bridge

#endif  // SHMLINK_BRIDGE_LOG_H_
