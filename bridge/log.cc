// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "bridge/log.h"

#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace shmlink::bridge {
namespace {

LogLevel LevelFromEnv() noexcept {
  const char* v = std::getenv("SHMLINK_LOG");
  if (v == nullptr) return LogLevel::kInfo;
  if (std::strcmp(v, "error") == 0) return LogLevel::kError;
  if (std::strcmp(v, "warn") == 0) return LogLevel::kWarn;
  if (std::strcmp(v, "debug") == 0) return LogLevel::kDebug;
  return LogLevel::kInfo;
}

const char* Name(LogLevel l) noexcept {
  switch (l) {
    case LogLevel::kError:
      return "error";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kDebug:
      return "debug";
  }
  return "?";
}

}  // namespace

bool LogEnabled(LogLevel level) noexcept {
  static const LogLevel max = LevelFromEnv();
  return level <= max;
}

void Log(LogLevel level, const char* fmt, ...) noexcept {
  if (!LogEnabled(level)) return;
  char line[1024];
  int n = std::snprintf(line, sizeof line, "shmlink-bridge[%d] %s: ", static_cast<int>(::getpid()),
                        Name(level));
  va_list ap;
  va_start(ap, fmt);
  int m = std::vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
  va_end(ap);
  size_t len = static_cast<size_t>(n) + (m < 0 ? 0 : static_cast<size_t>(m));
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  (void)!::write(STDERR_FILENO, line, len);
}

}  // namespace shmlink::bridge
