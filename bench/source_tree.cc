// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "bench/source_tree.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace shmlink::bench {

std::string SourceRoot() {
  if (const char* ws = std::getenv("BUILD_WORKSPACE_DIRECTORY")) return ws;
  if (access("WORKSPACE", R_OK) == 0 && access("bench/BUILD", R_OK) == 0) {
    std::error_code ec;
    return std::filesystem::current_path(ec).string();
  }
  return "";
}

std::string RunfilesRoot() {
  if (const char* dir = std::getenv("RUNFILES_DIR")) return std::string(dir) + "/shmlink";
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  return exe.string() + ".runfiles/shmlink";
}

}  // namespace shmlink::bench
