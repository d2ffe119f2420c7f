// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// shmlink: find, inspect, watch and clean shmlink shared-memory segments.
// Flags are parsed here (CLI11); the subcommands live in commands.cc.
#include <CLI/CLI.hpp>
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/segment_report.h"

namespace {

constexpr const char* kDescription =
    "shmlink: operate the shared-memory segments of shmlink (SPSC rings, MPMC queues, shared\n"
    "objects, connection rings) that live in /dev/shm.\n"
    "\n"
    "  shmlink list                  every segment: kind, size, fill, holders, status\n"
    "  shmlink inspect /NAME         header, positions, every counter, each holder\n"
    "  shmlink watch /NAME           live rates (msgs/s, bytes/s), fill, wake-ups\n"
    "  shmlink clean --dry-run       what would be removed, and why\n"
    "  shmlink clean                 remove segments whose holders are all dead\n"
    "\n"
    "Holder states: alive, dead (the kernel says the process is gone), unknown (cannot be\n"
    "decided, e.g. no permission to read /proc; never treated as dead). A segment is\n"
    "'stale' when every holder is dead and no process maps it: that is what clean removes.\n"
    "After a crash (kill -9): run 'shmlink list', then 'shmlink clean'.\n"
    "Set SHMLINK_LOG=info (or debug) in your programs to log segment lifecycle events.\n"
    "Details: docs/operations.md.";

}  // namespace

int main(int argc, char** argv) {
  shmlink::cli::InstallSigbusGuard();
  CLI::App app{kDescription, "shmlink"};
  app.require_subcommand(1);
  std::string dir = "/dev/shm";
  app.add_option("--dir", dir, "Directory holding the segments (default /dev/shm)");

  bool json = false, all = false;
  auto* list = app.add_subcommand("list", "List every shmlink segment, one line each");
  list->add_flag("--json", json, "Print a JSON array instead of a table");
  list->add_flag("--all", all, "Also list files of other programs (labelled 'foreign')");

  std::string name;
  auto* inspect = app.add_subcommand(
      "inspect", "Show one segment in full: header, positions, counters, holders");
  inspect->add_option("NAME", name, "Segment name, e.g. /feed (the leading / is optional)")
      ->required();
  inspect->add_flag("--json", json, "Print one JSON object");

  shmlink::cli::WatchOptions wopts;
  auto* watch = app.add_subcommand(
      "watch", "Show live rates of one segment every interval (like top); Ctrl-C stops");
  watch->add_option("NAME", name, "Segment name, e.g. /feed")->required();
  watch->add_option("--interval", wopts.interval_s, "Seconds between samples (default 1)");
  watch->add_flag("--json", wopts.json, "Print one JSON line per interval");
  watch->add_option("--count", wopts.count, "Stop after N samples (default: run until stopped)");

  bool dry_run = false;
  std::vector<std::string> names;
  auto* clean = app.add_subcommand(
      "clean",
      "Remove stale segments (every holder dead, nobody maps them); keep the rest, saying why");
  clean->add_flag("--dry-run", dry_run, "Only print what would be removed, and why");
  clean->add_option("NAME", names, "Only these segments (default: every segment in --dir)");

  CLI11_PARSE(app, argc, argv);

  if (*list) return shmlink::cli::RunList(dir, json, all, std::cout, std::cerr);
  if (*inspect) return shmlink::cli::RunInspect(dir, name, json, std::cout, std::cerr);
  if (*watch) return shmlink::cli::RunWatch(dir, name, wopts, std::cout, std::cerr);
  if (*clean) return shmlink::cli::RunClean(dir, dry_run, names, std::cout, std::cerr);
  return 2;
}
