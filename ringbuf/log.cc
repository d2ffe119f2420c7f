// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <shmlink/log.h>

namespace shmlink {

namespace {

LogLevel ParseLevel(const char* v) noexcept {
  if (v == nullptr) return LogLevel::kOff;
  if (std::strcmp(v, "info") == 0) return LogLevel::kInfo;
  if (std::strcmp(v, "debug") == 0) return LogLevel::kDebug;
  return LogLevel::kOff;
}

}  // namespace

LogLevel CurrentLogLevel() noexcept {
  // A function-local static: initialised once, thread-safely, at the first call.
  static const LogLevel level = ParseLevel(std::getenv("SHMLINK_LOG"));
  return level;
}

void LogEvent(LogLevel level, std::string_view event, std::string_view segment, const char* fmt,
              ...) noexcept {
  if (!LogEnabled(level)) return;
  char line[512];
  const std::string_view seg = segment.empty() ? std::string_view("(memfd)") : segment;
  int n =
      std::snprintf(line, sizeof(line), "shmlink[%d] %s %.*s %.*s: ", static_cast<int>(::getpid()),
                    level == LogLevel::kDebug ? "debug" : "info", static_cast<int>(event.size()),
                    event.data(), static_cast<int>(seg.size()), seg.data());
  if (n < 0) return;
  if (static_cast<size_t>(n) < sizeof(line)) {
    va_list ap;
    va_start(ap, fmt);
    const int m = std::vsnprintf(line + n, sizeof(line) - static_cast<size_t>(n), fmt, ap);
    va_end(ap);
    if (m > 0) n += m;
  }
  if (static_cast<size_t>(n) >= sizeof(line) - 1) n = sizeof(line) - 2;
  line[n++] = '\n';
  // One write: lines of concurrent threads/processes do not interleave. Best effort.
  ssize_t w = ::write(STDERR_FILENO, line, static_cast<size_t>(n));
  (void)w;
}

}  // namespace shmlink
