// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "bench/machine_state.h"

#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace shmlink::bench {
namespace {

std::string ReadLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string Fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// "L1d 48K ×1, L2 1280K ×1, L3 54M ×2" from cpu0's cache directories: each cache with
// the number of logical cores that share it.
std::string Caches() {
  std::string out;
  for (int i = 0; i < 8; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i);
    const std::string level = ReadLine(dir + "/level");
    if (level.empty()) break;
    const std::string type = ReadLine(dir + "/type");
    if (type == "Instruction") continue;
    const std::string size = ReadLine(dir + "/size");
    const std::string shared = ReadLine(dir + "/shared_cpu_list");
    int cores = 0;  // "0-1" or "0,2" or "0": count the listed cpus
    std::stringstream ss(shared);
    for (std::string part; std::getline(ss, part, ',');) {
      int a = 0, b = 0;
      if (std::sscanf(part.c_str(), "%d-%d", &a, &b) == 2) {
        cores += b - a + 1;
      } else if (!part.empty()) {
        ++cores;
      }
    }
    if (!out.empty()) out += ", ";
    out += "L" + level + (type == "Data" ? "d" : "") + " " + size;
    if (cores > 1) out += " shared by " + std::to_string(cores);
  }
  return out.empty() ? "caches unknown" : out;
}

}  // namespace

std::string MachineDescription() {
  std::string model = "unknown CPU";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.starts_with("model name")) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  utsname u{};
  uname(&u);
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  const double mem_gib = static_cast<double>(sysconf(_SC_PHYS_PAGES)) *
                         static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 30);
  return model + ", " + std::to_string(cores) + " logical cores (" + Caches() + "), " +
         Fmt("%.0f GiB", mem_gib) + " RAM, " + u.sysname + " " + u.release + " (" + u.machine + ")";
}

MachineSample SampleMachine() {
  MachineSample s;
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  s.at_ns = static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
  std::sscanf(ReadLine("/proc/loadavg").c_str(), "%lf", &s.load1);
  std::ifstream stat("/proc/stat");
  for (std::string line; std::getline(stat, line);) {
    std::istringstream in(line);
    std::string key;
    in >> key;
    if (key == "cpu") {
      // user nice system idle iowait irq softirq steal guest guest_nice; guest time is
      // already counted in user/nice, so the total stops at steal.
      uint64_t v[8] = {};
      for (uint64_t& x : v) in >> x;
      for (uint64_t x : v) s.cpu_jiffies += x;
      s.busy_jiffies = s.cpu_jiffies - v[3] - v[4];
      s.steal_jiffies = v[7];
    } else if (key == "ctxt") {
      in >> s.ctxt;
    }
  }
  auto add = [&s](int who) {
    rusage ru{};
    if (getrusage(who, &ru) != 0) return;
    for (const timeval& t : {ru.ru_utime, ru.ru_stime}) {
      s.own_cpu_ns +=
          static_cast<uint64_t>(t.tv_sec) * 1000000000u + static_cast<uint64_t>(t.tv_usec) * 1000u;
    }
  };
  add(RUSAGE_SELF);
  add(RUSAGE_CHILDREN);
  return s;
}

Disturbance Between(const MachineSample& before, const MachineSample& after) {
  Disturbance d;
  d.seconds =
      after.at_ns > before.at_ns ? static_cast<double>(after.at_ns - before.at_ns) / 1e9 : 0;
  d.load1 = after.load1;
  const uint64_t cpu = after.cpu_jiffies - before.cpu_jiffies;
  if (cpu > 0) {
    d.steal_pct = 100.0 * static_cast<double>(after.steal_jiffies - before.steal_jiffies) /
                  static_cast<double>(cpu);
  }
  if (d.seconds > 0) d.ctxt_per_s = static_cast<double>(after.ctxt - before.ctxt) / d.seconds;
  // Busy time minus our own, as a share of all cpu time (jiffies are 1/_SC_CLK_TCK s; our
  // time is exact, the kernel's busy time is sampled per tick, hence the clamp at zero).
  const double tick_s = 1.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
  const double busy_s = static_cast<double>(after.busy_jiffies - before.busy_jiffies) * tick_s;
  const double own_s = static_cast<double>(after.own_cpu_ns - before.own_cpu_ns) / 1e9;
  const double all_s = static_cast<double>(cpu) * tick_s;
  if (all_s > 0) d.foreign_pct = std::max(0.0, 100.0 * (busy_s - own_s) / all_s);
  return d;
}

bool Disturbance::Disturbed() const { return steal_pct > 5.0 || foreign_pct > 10.0; }

std::string Disturbance::Describe() const {
  return "others " + Fmt("%.1f %%", foreign_pct) + ", steal " + Fmt("%.1f %%", steal_pct) +
         ", load " + Fmt("%.1f", load1) + ", " +
         (ctxt_per_s >= 1000 ? Fmt("%.1f k", ctxt_per_s / 1000) : Fmt("%.0f", ctxt_per_s)) +
         " ctx switches/s";
}

}  // namespace shmlink::bench
