// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Crash-injection harness: pluggable scenarios, one per IPC primitive, each of which runs
// trials that fork real processes over the primitive, SIGKILL one of them at a random
// point, let the survivors finish, and account for every message.
//
// A scenario owns everything about its primitive: the processes, where they can be killed,
// what "delivered" means (its documented semantics) and the names of the files it creates
// (for the leak check). The runner (RunStress) only picks seeds, sums the counts and prints
// the summary. Adding a primitive = one CrashScenario subclass + one line in MakeScenarios.
//
// Kill methods used by every scenario (TrialPlan::kill):
//   kSelf      the victim raises SIGKILL on itself at a chosen program point between two
//              library calls (e.g. after reserve before commit, after peek before release)
//   kAsync     the parent sends SIGKILL after a random delay: lands anywhere, including
//              inside commit()/release()/close()/handshakes
//   kCpuTimer  a POSIX CPU-time timer in the victim delivers SIGKILL after a random amount
//              of its own CPU time (independent of scheduling on a loaded machine)
//   kNone      control trial, nobody is killed
// Each process records the phase it is in (a word in a shared ledger) so the summary can
// show where the kills actually landed.
#ifndef SHMLINK_TESTS_RELIABILITY_CRASH_SCENARIO_H_
#define SHMLINK_TESTS_RELIABILITY_CRASH_SCENARIO_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace shmlink::reliability {

// Counts of one or more trials. The first five are the promise (all must be zero except
// trials); the rest explain what happened.
struct TrialCounts {
  uint64_t trials = 0;
  uint64_t lost = 0;         // committed message never delivered
  uint64_t duplicated = 0;   // delivered more often than the primitive's semantics allow
  uint64_t hangs = 0;        // a process did not finish within the trial deadline, or a
                             // bounded wait expired where progress was due
  uint64_t leaked = 0;       // a segment or socket file of the trial still exists afterwards
  uint64_t misordered = 0;   // delivered out of the order the primitive promises
  uint64_t corrupt = 0;      // delivered bytes that differ from what was written
  uint64_t errors = 0;       // an unexpected error result or process exit status
  uint64_t kills = 0;        // trials in which the victim really died of SIGKILL
  uint64_t redelivered = 0;  // duplicates the semantics allow (e.g. peeked, not released)
  uint64_t messages = 0;     // messages delivered in total
  std::map<std::string, uint64_t> kill_phases;  // "role:phase" -> kills that landed there
  std::map<std::string, uint64_t> scenarios;    // scenario name -> trials

  void Add(const TrialCounts& other);
  bool Clean() const {
    return lost + duplicated + hangs + leaked + misordered + corrupt + errors == 0;
  }
  // {"trials": N, "lost": 0, "duplicated": 0, "hangs": 0, "leaked": 0, ...extras}
  std::string Json(double seconds) const;
};

enum class KillMethod { kNone, kSelf, kAsync, kCpuTimer };
const char* KillMethodName(KillMethod m);

struct TrialOptions {
  uint64_t seed = 1;
  bool verbose = false;
  // Hard bound on a whole trial; a process still running then counts as a hang. Generous:
  // the processes themselves report a hang after wait_bound without progress.
  std::chrono::milliseconds deadline{60000};
  // A process that makes no progress (no message sent/received, no client) for this long
  // gives up and reports a hang. Every wait inside is itself bounded by a timeout.
  std::chrono::milliseconds wait_bound{8000};
};

class CrashScenario {
 public:
  virtual ~CrashScenario() = default;
  virtual std::string name() const = 0;
  // One complete trial: create, fork, kill, wait, verify, clean up. Never throws and never
  // leaves a child process running.
  virtual TrialCounts RunTrial(const TrialOptions& options) = 0;
};

// Scenarios whose name is in the comma-separated `filter` ("all" = every one).
std::vector<std::unique_ptr<CrashScenario>> MakeScenarios(const std::string& filter);
std::unique_ptr<CrashScenario> MakeSpscScenario();
std::unique_ptr<CrashScenario> MakeConnectionScenario();
std::unique_ptr<CrashScenario> MakeMpmcScenario();

struct StressOptions {
  uint64_t trials = 100;
  uint64_t seed = 0;  // 0: from the clock
  std::string scenarios = "all";
  bool verbose = false;
};
// Runs `trials` trials round-robin over the selected scenarios.
TrialCounts RunStress(const StressOptions& options, double* seconds = nullptr);

// ---- helpers shared by scenarios

// Memory shared with forked children (MAP_SHARED | MAP_ANONYMOUS: no file to leak).
void* MapSharedAnonymous(size_t bytes);
void UnmapShared(void* p, size_t bytes);

// Arms a CPU-time timer that SIGKILLs the calling process after `cpu` of its CPU time.
void ArmCpuKillTimer(std::chrono::microseconds cpu);

// Waits for `pid` until `deadline`; returns its raw wait status, or -1 if it is still
// running then (the caller decides whether to kill it).
int WaitUntil(pid_t pid, std::chrono::steady_clock::time_point deadline);
// SIGKILLs and reaps `pid` (used for processes that overran the deadline).
void KillAndReap(pid_t pid);

// True if the POSIX shm name exists in /dev/shm.
bool ShmExists(const std::string& name);

}  // namespace shmlink::reliability

#endif  // SHMLINK_TESTS_RELIABILITY_CRASH_SCENARIO_H_
