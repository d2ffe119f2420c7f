// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "tests/kill_on_write.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <new>
#include <thread>

namespace shmlink::testing {
namespace {

// The child's request to its tracer, in an anonymous shared mapping made before the fork.
struct ArmRequest {
  // SYNC: the child writes the fields, then raises SIGSTOP; the tracer reads them in the
  // stop that follows (the kernel's stop/wait handshake orders them). Relaxed atomics only
  // keep the compiler from caching the fields across raise().
  std::atomic<uint64_t> addr{0};
  std::atomic<uint64_t> mask{0};
  std::atomic<uint64_t> value{0};
  std::atomic<int32_t> nth{0};
  std::atomic<int32_t> pending{0};  // 1: a request waits for the tracer
  std::atomic<int32_t> result{0};   // 1: armed, -1: failed
};

ArmRequest* g_request = nullptr;  // set in the traced child only

#if defined(__x86_64__)
constexpr bool kSupported = true;
// DR7: L0 (local enable of DR0), RW0 = 01 (break on data writes), LEN0 = 10 (8 bytes).
constexpr unsigned long kDr7Write8 = 1ul | (1ul << 16) | (2ul << 18);
long DebugRegOffset(int n) {
  return static_cast<long>(offsetof(struct user, u_debugreg) + sizeof(unsigned long) * n);
}
bool SetDebugReg(pid_t pid, int n, unsigned long v) {
  return ::ptrace(PTRACE_POKEUSER, pid, DebugRegOffset(n), v) == 0;
}
unsigned long GetDebugReg(pid_t pid, int n) {
  errno = 0;
  return static_cast<unsigned long>(::ptrace(PTRACE_PEEKUSER, pid, DebugRegOffset(n), nullptr));
}
#else
constexpr bool kSupported = false;
bool SetDebugReg(pid_t, int, unsigned long) { return false; }
unsigned long GetDebugReg(pid_t, int) { return 0; }
#endif

struct Watch {
  uint64_t addr = 0;
  uint64_t mask = 0;
  uint64_t value = 0;
  int nth = 0;
  int seen = 0;
};

// Applies the child's pending request to the watchpoint registers.
void Arm(pid_t pid, ArmRequest& req, Watch& w) {
  w = {};
  w.addr = req.addr.load(std::memory_order_relaxed);
  w.mask = req.mask.load(std::memory_order_relaxed);
  w.value = req.value.load(std::memory_order_relaxed);
  w.nth = req.nth.load(std::memory_order_relaxed);
  bool ok = SetDebugReg(pid, 7, 0);  // disable while DR0 changes
  if (ok && w.addr != 0) {
    ok = SetDebugReg(pid, 0, w.addr) && SetDebugReg(pid, 6, 0) && SetDebugReg(pid, 7, kDr7Write8);
  }
  if (!ok) w = {};
  req.result.store(ok ? 1 : -1, std::memory_order_relaxed);
  req.pending.store(0, std::memory_order_relaxed);
}

TracedOutcome Finish(pid_t pid, TracedOutcome::Kind kind, int code, uint64_t word = 0) {
  int status = 0;
  if (kind == TracedOutcome::kKilledAtPoint || kind == TracedOutcome::kTimedOut) {
    ::kill(pid, SIGKILL);
  }
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return {kind, code, word};
}

}  // namespace

const char* TracedOutcomeName(TracedOutcome::Kind kind) {
  switch (kind) {
    case TracedOutcome::kKilledAtPoint:
      return "killed-at-point";
    case TracedOutcome::kExited:
      return "exited";
    case TracedOutcome::kSignaled:
      return "signaled";
    case TracedOutcome::kTimedOut:
      return "timed-out";
    case TracedOutcome::kTraceFailed:
      return "trace-failed";
  }
  return "?";
}

bool KillOnWrite(const void* addr, uint64_t mask, uint64_t value, int nth) {
  if (!kSupported || g_request == nullptr || nth < 1) return false;
  if ((reinterpret_cast<uintptr_t>(addr) & 7) != 0) return false;
  g_request->addr.store(reinterpret_cast<uintptr_t>(addr), std::memory_order_relaxed);
  g_request->mask.store(mask, std::memory_order_relaxed);
  g_request->value.store(value, std::memory_order_relaxed);
  g_request->nth.store(nth, std::memory_order_relaxed);
  g_request->result.store(0, std::memory_order_relaxed);
  g_request->pending.store(1, std::memory_order_relaxed);
  ::raise(SIGSTOP);  // the tracer arms in this stop and resumes us without the signal
  return g_request->result.load(std::memory_order_relaxed) == 1;
}

TracedOutcome RunTraced(const std::function<int()>& body, std::chrono::milliseconds limit) {
  void* mem = ::mmap(nullptr, sizeof(ArmRequest), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return {TracedOutcome::kTraceFailed, errno, 0};
  auto* req = new (mem) ArmRequest();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::munmap(mem, sizeof(ArmRequest));
    return {TracedOutcome::kTraceFailed, err, 0};
  }
  if (pid == 0) {
    g_request = req;
    if (::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) ::_exit(125);
    ::raise(SIGSTOP);  // let the tracer set its options before the body runs
    int rc = 1;
    try {
      rc = body();
    } catch (...) {
      rc = 99;
    }
    ::_exit(rc);
  }
  TracedOutcome out;
  Watch w;
  bool first_stop = true;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      out = {TracedOutcome::kTraceFailed, errno, 0};
      break;
    }
    if (r == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        out = Finish(pid, TracedOutcome::kTimedOut, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      continue;
    }
    if (WIFEXITED(status)) {
      out = {WEXITSTATUS(status) == 125 && first_stop ? TracedOutcome::kTraceFailed
                                                      : TracedOutcome::kExited,
             WEXITSTATUS(status), 0};
      break;
    }
    if (WIFSIGNALED(status)) {
      out = {TracedOutcome::kSignaled, WTERMSIG(status), 0};
      break;
    }
    if (!WIFSTOPPED(status)) continue;
    const int sig = WSTOPSIG(status);
    int deliver = 0;
    if (first_stop) {
      first_stop = false;
      // If this test process dies, the kernel kills the victim (no stray processes).
      ::ptrace(PTRACE_SETOPTIONS, pid, nullptr, PTRACE_O_EXITKILL);
    } else if (sig == SIGSTOP && req->pending.load(std::memory_order_relaxed) == 1) {
      Arm(pid, *req, w);
    } else if (sig == SIGTRAP && w.addr != 0 && (GetDebugReg(pid, 6) & 1u) != 0) {
      SetDebugReg(pid, 6, 0);  // DR6 status bits are sticky
      errno = 0;
      const long word = ::ptrace(PTRACE_PEEKDATA, pid, w.addr, nullptr);
      const uint64_t v = static_cast<uint64_t>(word);
      if (errno == 0 && (v & w.mask) == w.value && ++w.seen == w.nth) {
        out = Finish(pid, TracedOutcome::kKilledAtPoint, 0, v);
        break;
      }
    } else if (sig == SIGTRAP) {
      deliver = 0;  // e.g. the stop after an execve under PTRACE_TRACEME
    } else {
      deliver = sig;  // the body's own signals go through
    }
    ::ptrace(PTRACE_CONT, pid, nullptr, deliver);
  }
  ::munmap(mem, sizeof(ArmRequest));
  return out;
}

}  // namespace shmlink::testing
