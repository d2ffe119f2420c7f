// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The four subcommands of `shmlink` as functions (main.cc only parses flags). Each writes
// its normal output to `out`, problems to `err`, and returns the process exit status:
//   0  done (list/inspect/watch: printed; clean: nothing failed, even if some were kept)
//   1  a named segment does not exist or could not be read, or an unlink failed
//   2  bad usage (an invalid name)
// `dir` is the shm directory (default /dev/shm; tests point it elsewhere).
#ifndef SHMLINK_CLI_COMMANDS_H_
#define SHMLINK_CLI_COMMANDS_H_

#include <ostream>
#include <string>
#include <vector>

namespace shmlink::cli {

struct WatchOptions {
  double interval_s = 1.0;
  bool json = false;
  int count = 0;  // lines to print; 0: until interrupted
};

int RunList(const std::string& dir, bool json, bool all, std::ostream& out, std::ostream& err);
int RunInspect(const std::string& dir, const std::string& name, bool json, std::ostream& out,
               std::ostream& err);
int RunWatch(const std::string& dir, const std::string& name, const WatchOptions& opts,
             std::ostream& out, std::ostream& err);
int RunClean(const std::string& dir, bool dry_run, const std::vector<std::string>& names,
             std::ostream& out, std::ostream& err);

}  // namespace shmlink::cli

#endif  // SHMLINK_CLI_COMMANDS_H_
