// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "tests/kill_on_write.h"
#include "tests/reliability/crash_scenario.h"

namespace shmlink::reliability {

void TrialCounts::Add(const TrialCounts& o) {
  trials += o.trials;
  lost += o.lost;
  duplicated += o.duplicated;
  hangs += o.hangs;
  leaked += o.leaked;
  misordered += o.misordered;
  corrupt += o.corrupt;
  errors += o.errors;
  kills += o.kills;
  redelivered += o.redelivered;
  messages += o.messages;
  takeovers += o.takeovers;
  for (const auto& [k, v] : o.kill_phases) kill_phases[k] += v;
  for (const auto& [k, v] : o.scenarios) scenarios[k] += v;
}

namespace {
std::string JsonMap(const std::map<std::string, uint64_t>& m) {
  std::ostringstream out;
  out << "{";
  bool first = true;
  for (const auto& [k, v] : m) {
    out << (first ? "" : ", ") << "\"" << k << "\": " << v;
    first = false;
  }
  out << "}";
  return out.str();
}
}  // namespace

std::string TrialCounts::Json(double seconds) const {
  std::ostringstream out;
  out << "{\"trials\": " << trials << ", \"lost\": " << lost << ", \"duplicated\": " << duplicated
      << ", \"hangs\": " << hangs << ", \"leaked\": " << leaked
      << ", \"misordered\": " << misordered << ", \"corrupt\": " << corrupt
      << ", \"errors\": " << errors << ", \"kills\": " << kills
      << ", \"redelivered\": " << redelivered << ", \"messages\": " << messages
      << ", \"takeovers\": " << takeovers << ", \"seconds\": " << static_cast<uint64_t>(seconds)
      << ", \"scenarios\": " << JsonMap(scenarios) << ", \"kill_phases\": " << JsonMap(kill_phases)
      << "}";
  return out.str();
}

const char* KillMethodName(KillMethod m) {
  switch (m) {
    case KillMethod::kNone:
      return "none";
    case KillMethod::kSelf:
      return "self";
    case KillMethod::kAsync:
      return "async";
    case KillMethod::kCpuTimer:
      return "cpu-timer";
    case KillMethod::kWatch:
      return "watch";
  }
  return "?";
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void ArmCpuKillTimer(std::chrono::microseconds cpu) {
  sigevent ev{};
  ev.sigev_notify = SIGEV_SIGNAL;
  ev.sigev_signo = SIGKILL;
  timer_t timer;
  if (::timer_create(CLOCK_PROCESS_CPUTIME_ID, &ev, &timer) != 0) {
    ::raise(SIGKILL);  // cannot arm: die now rather than silently not at all
  }
  itimerspec spec{};
  const auto us = cpu.count() < 1 ? 1 : cpu.count();
  spec.it_value.tv_sec = us / 1000000;
  spec.it_value.tv_nsec = (us % 1000000) * 1000;
  ::timer_settime(timer, 0, &spec, nullptr);
}

int WaitUntil(pid_t pid, std::chrono::steady_clock::time_point deadline) {
  for (uint32_t i = 0;; ++i) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return 0;  // not our child any more: nothing to wait for
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    ::usleep(i < 100 ? 200 : 2000);
  }
}

void KillAndReap(pid_t pid) {
  ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

int WaitOrCountHang(pid_t pid, std::chrono::steady_clock::time_point deadline, TrialCounts& c) {
  const int status = WaitUntil(pid, deadline);
  if (status == -1) {
    c.hangs++;
    KillAndReap(pid);
  }
  return status;
}

bool KilledBySigkill(int status) {
  return status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

void Supervise(std::vector<Child>& kids, std::chrono::steady_clock::time_point deadline,
               TrialCounts& c, const std::function<void(size_t)>& on_exit,
               const std::function<void()>& tick) {
  for (uint32_t round = 0;; ++round) {
    bool running = false;
    // By index: on_exit may append (and so reallocate).
    for (size_t i = 0; i < kids.size(); ++i) {
      if (kids[i].reaped) {
        if (!kids[i].reported) {
          kids[i].reported = true;
          on_exit(i);
        }
        continue;
      }
      int status = 0;
      const pid_t r = ::waitpid(kids[i].pid, &status, WNOHANG);
      if (r == 0 || (r < 0 && errno == EINTR)) {
        running = true;
        continue;
      }
      kids[i].reaped = kids[i].reported = true;
      kids[i].status = r == kids[i].pid ? status : 0;  // not our child: nothing to wait for
      on_exit(i);
    }
    if (tick) tick();
    bool all = true;
    for (const Child& k : kids) all = all && k.reaped;
    if (all) return;
    if (running && std::chrono::steady_clock::now() >= deadline) {
      for (size_t i = 0; i < kids.size(); ++i) {
        if (kids[i].reaped) continue;
        c.hangs++;
        KillAndReap(kids[i].pid);
        kids[i].reaped = kids[i].reported = true;
        kids[i].status = -1;
        on_exit(i);
      }
      // Successors appended by on_exit after the deadline are killed at once as well.
      continue;
    }
    ::usleep(round < 100 ? 200 : 1000);
  }
}

Child RunWatchedChild(const std::function<int()>& body, int tag, std::chrono::milliseconds limit,
                      TrialCounts& c, bool* at_point) {
  const testing::TracedOutcome out = testing::RunTraced(body, limit);
  Child k{kWatchedPid, tag, -1, true, false};
  if (at_point != nullptr) *at_point = out.kind == testing::TracedOutcome::kKilledAtPoint;
  switch (out.kind) {
    case testing::TracedOutcome::kKilledAtPoint:
      k.status = SIGKILL;  // the raw status of a process killed by SIGKILL
      break;
    case testing::TracedOutcome::kExited:
      k.status = (out.code & 0xff) << 8;
      break;
    case testing::TracedOutcome::kSignaled:
      k.status = out.code & 0x7f;
      break;
    case testing::TracedOutcome::kTimedOut:
      c.hangs++;
      break;
    case testing::TracedOutcome::kTraceFailed:
      // No ptrace here (e.g. a container without it): the body never ran. Run it untraced
      // instead (its KillOnWrite returns false, so it is not killed): the trial goes on as
      // a control trial, and kill_phases says why.
      c.kill_phases["watch:trace_failed"]++;
      k = {testing::ForkChild(body), tag};
      if (at_point != nullptr) *at_point = false;
      break;
  }
  return k;
}

namespace {
uint32_t PatternSeed(uint64_t seq) { return static_cast<uint32_t>(seq * 2654435761u + 17); }
std::byte PatternByte(uint32_t seed, size_t i) {
  return std::byte(static_cast<uint8_t>(seed + i * 13));
}
}  // namespace

void WriteSeqMessage(std::span<std::byte> buf, uint64_t seq) {
  const uint32_t len = static_cast<uint32_t>(buf.size());
  const uint32_t seed = PatternSeed(seq);
  std::memcpy(buf.data(), &seq, 8);
  std::memcpy(buf.data() + 8, &len, 4);
  std::memcpy(buf.data() + 12, &seed, 4);
  for (size_t i = kSeqMessageMin; i < buf.size(); ++i) buf[i] = PatternByte(seed, i);
}

int64_t ReadSeqMessage(std::span<const std::byte> msg, uint64_t limit) {
  if (msg.size() < kSeqMessageMin) return -1;
  uint64_t seq;
  uint32_t len, seed;
  std::memcpy(&seq, msg.data(), 8);
  std::memcpy(&len, msg.data() + 8, 4);
  std::memcpy(&seed, msg.data() + 12, 4);
  if (len != msg.size() || seq >= limit || seed != PatternSeed(seq)) return -1;
  for (size_t i = kSeqMessageMin; i < msg.size(); ++i) {
    if (msg[i] != PatternByte(seed, i)) return -1;
  }
  return static_cast<int64_t>(seq);
}

std::vector<std::unique_ptr<CrashScenario>> MakeScenarios(const std::string& filter) {
  std::vector<std::unique_ptr<CrashScenario>> all;
  all.push_back(MakeSpscScenario());
  all.push_back(MakeMpmcScenario());
  all.push_back(MakeConnectionScenario());
  all.push_back(MakeTopicScenario());
  if (filter == "all" || filter.empty()) return all;
  std::vector<std::unique_ptr<CrashScenario>> picked;
  const std::string list = "," + filter + ",";
  for (auto& s : all) {
    if (list.find("," + s->name() + ",") != std::string::npos) picked.push_back(std::move(s));
  }
  return picked;
}

TrialCounts RunStress(const StressOptions& options, double* seconds) {
  const auto start = std::chrono::steady_clock::now();
  auto scenarios = MakeScenarios(options.scenarios);
  TrialCounts total;
  if (scenarios.empty()) {
    std::fprintf(stderr, "crash_stress: no scenario matches '%s'\n", options.scenarios.c_str());
    total.errors = 1;
    return total;
  }
  uint64_t seed = options.seed;
  if (seed == 0) seed = static_cast<uint64_t>(start.time_since_epoch().count()) | 1;
  std::fprintf(stderr, "crash_stress: seed %llu (rerun with --seed)\n", (unsigned long long)seed);
  for (uint64_t t = 0; t < options.trials; ++t) {
    CrashScenario& s = *scenarios[t % scenarios.size()];
    TrialOptions o;
    o.seed = seed + t * 0x9E3779B97F4A7C15ull;
    o.verbose = options.verbose;
    TrialCounts c = s.RunTrial(o);
    c.trials = 1;
    c.scenarios[s.name()] += 1;
    if (!c.Clean()) {
      std::fprintf(stderr, "crash_stress: trial %llu (%s, seed %llu) failed: %s\n",
                   (unsigned long long)t, s.name().c_str(), (unsigned long long)o.seed,
                   c.Json(0).c_str());
    }
    total.Add(c);
  }
  if (seconds != nullptr) {
    *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  return total;
}

}  // namespace shmlink::reliability
