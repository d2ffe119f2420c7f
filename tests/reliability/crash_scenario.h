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
//   kWatch     the victim runs traced (tests/kill_on_write.h) and arms a hardware
//              watchpoint on a shared word the library writes at a named point: the tracer
//              SIGKILLs it right after that write, inside the library call (e.g. SPSC
//              commit() after the record header and before write_pos). Deterministic: the
//              kill lands exactly there. Counted in kill_phases as "<role>:at_<point>".
//   kNone      control trial, nobody is killed
// After a kill, a successor process takes the dead one's role over where the primitive
// allows it (TrialCounts::takeovers), and the stream continues.
// Each process records the phase it is in (a word in a shared ledger) so the summary can
// show where the kills actually landed.
//
// SYNC(ledger): the ledgers are anonymous shared memory written by the children and read by
// the parent only after waitpid() reaped the writer (or, for a few progress words used to
// time kills, as hints). So no reader races a writer; what matters is the order in which a
// process's stores are performed when a SIGKILL stops it after an arbitrary instruction:
// where one ledger word excuses another (an announcement before a count, a claim before a
// publish), the later store is a release, which keeps the earlier one before it (compiler
// and CPU); a store executed before the kill reaches the shared page. Other ledger words
// are relaxed or default (seq_cst) atomics without such a pairing.
#ifndef SHMLINK_TESTS_RELIABILITY_CRASH_SCENARIO_H_
#define SHMLINK_TESTS_RELIABILITY_CRASH_SCENARIO_H_

#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tests/test_util.h"

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
  uint64_t takeovers = 0;    // successor processes that took a killed process's role over
  std::map<std::string, uint64_t> kill_phases;  // "role:phase" -> kills that landed there
  std::map<std::string, uint64_t> scenarios;    // scenario name -> trials

  void Add(const TrialCounts& other);
  bool Clean() const {
    return lost + duplicated + hangs + leaked + misordered + corrupt + errors == 0;
  }
  // {"trials": N, "lost": 0, "duplicated": 0, "hangs": 0, "leaked": 0, ...extras}
  std::string Json(double seconds) const;
};

enum class KillMethod { kNone, kSelf, kAsync, kCpuTimer, kWatch };
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
std::unique_ptr<CrashScenario> MakeTopicScenario();

struct StressOptions {
  uint64_t trials = 100;
  uint64_t seed = 0;  // 0: from the clock
  std::string scenarios = "all";
  bool verbose = false;
};
// Runs `trials` trials round-robin over the selected scenarios.
TrialCounts RunStress(const StressOptions& options, double* seconds = nullptr);

// ---- helpers shared by scenarios

// Steady-clock time in ns, for timestamps in a ledger shared with children.
int64_t NowNs();

// Arms a CPU-time timer that SIGKILLs the calling process after `cpu` of its CPU time.
void ArmCpuKillTimer(std::chrono::microseconds cpu);

// Polls until `ready()` holds or the child `pid` has exited, at most `limit`: used to time
// an asynchronous kill from a point in the victim's life. Time-bound, not iteration-bound:
// under heavy load usleep oversleeps a lot.
template <typename Ready>
void AwaitOrExit(pid_t pid, std::chrono::milliseconds limit, Ready ready,
                 std::chrono::microseconds poll = std::chrono::microseconds(50)) {
  for (const auto until = std::chrono::steady_clock::now() + limit;
       std::chrono::steady_clock::now() < until && !ready();) {
    if (testing::HasExited(pid)) return;
    ::usleep(static_cast<useconds_t>(poll.count()));
  }
}

// Waits for `pid` until `deadline`; returns its raw wait status, or -1 if it is still
// running then (the caller decides whether to kill it).
int WaitUntil(pid_t pid, std::chrono::steady_clock::time_point deadline);
// SIGKILLs and reaps `pid` (used for processes that overran the deadline).
void KillAndReap(pid_t pid);
// WaitUntil; a process still running at `deadline` counts as a hang in `c` and is killed
// and reaped (then -1 is returned, as by WaitUntil).
int WaitOrCountHang(pid_t pid, std::chrono::steady_clock::time_point deadline, TrialCounts& c);
// True if the raw wait status `status` (not -1) says: killed by SIGKILL.
bool KilledBySigkill(int status);

// One process of a trial, watched by Supervise.
struct Child {
  pid_t pid = -1;
  int tag = 0;      // the scenario's name for it (role, index, incarnation)
  int status = -1;  // raw wait status once reaped; -1: overran the deadline
  bool reaped = false;
  bool reported = false;  // on_exit ran for it
};
// Runs `body` as a child traced by this process (kill_on_write.h: it may arm a watchpoint)
// until it exits or is killed at its point, at most `limit`; blocks meanwhile (children
// forked before keep running). Returns it as an already reaped Child (pid kWatchedPid,
// `tag`) with a wait status as waitpid would give (SIGKILL when killed at its point), which
// Supervise reports like any other. An overrun counts as a hang. Where tracing is not
// possible (no ptrace), `body` runs as an ordinary child instead (not reaped yet; its
// KillOnWrite returns false) and kill_phases counts "watch:trace_failed".
// `*at_point` (optional): whether the tracer killed it at its armed write.
inline constexpr pid_t kWatchedPid = -2;
Child RunWatchedChild(const std::function<int()>& body, int tag, std::chrono::milliseconds limit,
                      TrialCounts& c, bool* at_point = nullptr);
// Polls every child in `kids` until all have exited, and at most until `deadline` (then
// each one still running counts as a hang in `c` and is killed and reaped, status -1).
// `on_exit(i)` runs once for each child i as soon as it is reaped (at once for one that
// RunWatchedChild already reaped), in the order seen; it
// may append children (a successor for a killed one), which are then supervised too.
// `tick()` runs every round (e.g. to tell consumers that every producer is finished).
// Polling, not a blocking wait: a killed victim's successor must start while the others
// are still running, whichever child ends first.
void Supervise(std::vector<Child>& kids, std::chrono::steady_clock::time_point deadline,
               TrialCounts& c, const std::function<void(size_t)>& on_exit,
               const std::function<void()>& tick = {});

// names[phase], or "?" for a phase number out of range (a ledger word is only trusted so far).
template <size_t N>
const char* PhaseName(const char* const (&names)[N], uint32_t phase) {
  return phase < N ? names[phase] : "?";
}

// Self-checking stream messages: [u64 seq][u32 length][u32 pattern seed][pattern...], at
// least kSeqMessageMin bytes.
inline constexpr size_t kSeqMessageMin = 16;
// Fills `buf` (at least kSeqMessageMin bytes) as message `seq`.
void WriteSeqMessage(std::span<std::byte> buf, uint64_t seq);
// The seq of a message WriteSeqMessage wrote (below `limit`), or -1 if `msg` is not one.
int64_t ReadSeqMessage(std::span<const std::byte> msg, uint64_t limit);

}  // namespace shmlink::reliability

#endif  // SHMLINK_TESTS_RELIABILITY_CRASH_SCENARIO_H_
