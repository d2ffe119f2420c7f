// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The command-line flags `ping` and `pong` share. Their defaults must agree (the two
// programs meet by --name), and --wait's vocabulary is the one ParseWait understands, so
// both live here once. Each program adds its own --count and --size between them.
#ifndef SHMLINK_EXAMPLES_PING_PONG_OPTIONS_H_
#define SHMLINK_EXAMPLES_PING_PONG_OPTIONS_H_

#include <CLI/CLI.hpp>
#include <string>

#include "examples/ping_pong/common.h"

namespace ping_pong {

struct SharedOptions {
  std::string name = "/shmlink-ping-pong";
  std::string wait = "spin-then-sleep";
  double timeout_s = 30;
};

// Adds --name to `app`; `peer` is the other program ("ping" or "pong"), for the help text.
inline void AddNameOption(CLI::App& app, SharedOptions& o, const std::string& peer) {
  app.add_option("--name", o.name, "shm name shared with " + peer + " (leading '/')");
}

// Adds --wait (one of ParseWait's strategies) and --timeout (how long to wait for `peer`).
inline void AddWaitOptions(CLI::App& app, SharedOptions& o, const std::string& peer) {
  app.add_option("--wait", o.wait, "wait strategy: spin | spin-then-sleep | sleep")
      ->check(CLI::IsMember({"spin", "spin-then-sleep", "sleep"}));
  app.add_option("--timeout", o.timeout_s, "seconds to wait for " + peer + " to appear");
}

}  // namespace ping_pong

#endif  // SHMLINK_EXAMPLES_PING_PONG_OPTIONS_H_
