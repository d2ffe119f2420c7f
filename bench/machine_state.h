// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// What the machine is and what it was doing while a benchmark case ran, so a report can
// say which figures were disturbed (the build machine is a shared 2-core VM).
//
//   MachineSample before = SampleMachine();
//   ... run a case ...
//   Disturbance d = Between(before, SampleMachine());
//   if (d.Disturbed()) ...        // rerun it, or flag it in the report
//
// Sources: /proc/stat (aggregate cpu time by state, including steal; context switches),
// getrusage (the cpu time of this process and of its waited-for children: the case's own
// processes), /proc/loadavg (shown, not judged: a 1-minute average lags across cases and
// counts the case's own processes). A file that cannot be read leaves its fields at zero
// (never disturbed on that account). Thread safety: plain functions.
#ifndef SHMLINK_BENCH_MACHINE_STATE_H_
#define SHMLINK_BENCH_MACHINE_STATE_H_

#include <cstdint>
#include <string>

namespace shmlink::bench {

// CPU model, logical cores, caches (level, size, shared by how many cores), RAM, kernel.
std::string MachineDescription();

struct MachineSample {
  uint64_t at_ns = 0;          // CLOCK_MONOTONIC
  double load1 = 0;            // 1-minute load average
  uint64_t cpu_jiffies = 0;    // all cpu time, every state
  uint64_t busy_jiffies = 0;   // all but idle and iowait
  uint64_t steal_jiffies = 0;  // time the hypervisor ran something else on our vCPUs
  uint64_t own_cpu_ns = 0;     // user + system time of this process and its reaped children
  uint64_t ctxt = 0;           // context switches since boot
};

MachineSample SampleMachine();

struct Disturbance {
  double seconds = 0;
  double load1 = 0;        // at the end
  double steal_pct = 0;    // of all cpu time in the interval
  double foreign_pct = 0;  // cpu time of processes other than ours, of all cpu time
  double ctxt_per_s = 0;

  // Judged from the kernel's accounting only: steal above 5 % of cpu time (the hypervisor
  // ran another guest on our vCPUs), or other processes of this machine using more than
  // 10 % of it (busy time not spent by this process or its children). Context switches
  // and load are reported, not judged: sleeping waits and oversubscribed cases cause them
  // by design.
  bool Disturbed() const;
  // "others 0.4 %, steal 0.0 %, load 1.9, 12.1 k ctx switches/s".
  std::string Describe() const;
};

Disturbance Between(const MachineSample& before, const MachineSample& after);

}  // namespace shmlink::bench

#endif  // SHMLINK_BENCH_MACHINE_STATE_H_
