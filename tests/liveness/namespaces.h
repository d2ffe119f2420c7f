// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Process environments for liveness tests, as containers and locked-down hosts make them:
// a holder that is pid 1 of its own PID namespace (its pid means another process to us),
// and a checker that cannot read /proc. Linux only; both need privileges (root here) and
// report "not permitted" so that tests can skip instead of fail.
#ifndef SHMLINK_TESTS_LIVENESS_NAMESPACES_H_
#define SHMLINK_TESTS_LIVENESS_NAMESPACES_H_

#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "tests/test_util.h"

namespace shmlink::testing {

// Shared (testing::NewShared) between the test and StartInPidNamespace's processes.
struct PidNsShared {
  // 0 pending; 1 holding and 2-... are the holder's to set (1: ready); kPidNsRefused: unshare
  // not permitted; kPidNsForkFailed: the namespace's first fork failed.
  std::atomic<int> status{0};
  std::atomic<pid_t> holder{0};  // the holder as the test sees it (root namespace pid)
  std::atomic<pid_t> ns_pid{0};  // the holder's pid in its own namespace (1)
};
inline constexpr int kPidNsRefused = 100;
inline constexpr int kPidNsForkFailed = 101;

// Runs `holder` as pid 1 of a new PID namespace, below an intermediate child (*mid) that
// reaps it and then exits 0. `holder` sets shared->status and notifies `ready` itself once
// it holds what it should. Returns false if the namespace could not be made (status says
// which; *mid is reaped then); otherwise waits until shared->holder is known.
inline bool StartInPidNamespace(const std::function<int()>& holder, const Signal& ready,
                                PidNsShared* shared, pid_t* mid) {
  *mid = ForkChild([&]() -> int {
    if (::unshare(CLONE_NEWPID) != 0) {
      shared->status.store(kPidNsRefused);
      ready.Notify();
      return 0;
    }
    const pid_t h = ::fork();  // the first process of the new namespace: pid 1 there
    if (h == 0) {
      shared->ns_pid.store(::getpid());
      ::_exit(holder());
    }
    if (h < 0) {
      shared->status.store(kPidNsForkFailed);
      ready.Notify();
      return 1;
    }
    shared->holder.store(h);
    int st = 0;
    ::waitpid(h, &st, 0);
    return 0;
  });
  if (!ready.Wait()) return false;
  if (shared->status.load() >= kPidNsRefused) {
    WaitChild(*mid);
    return false;
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (shared->holder.load() == 0) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Makes /proc unreadable for the calling process (call it in a child): a private mount
// namespace with a tmpfs mounted over /proc. Returns false if that is not permitted.
inline bool HideProc() {
  if (::unshare(CLONE_NEWNS) != 0) return false;
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return false;
  if (::mount("tmpfs", "/proc", "tmpfs", 0, nullptr) != 0) return false;
  return ::access("/proc/self/stat", F_OK) != 0;
}

}  // namespace shmlink::testing

#endif  // SHMLINK_TESTS_LIVENESS_NAMESPACES_H_
