// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Helpers shared by shmlink's tests: unique shm names and child processes.
#ifndef SHMLINK_TESTS_TEST_UTIL_H_
#define SHMLINK_TESTS_TEST_UTIL_H_

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>

namespace shmlink::testing {

// A shm name unique to this process and call, so parallel tests never collide.
inline std::string UniqueShmName(const std::string& tag) {
  static std::atomic<int> counter{0};
  static const unsigned salt = std::random_device{}();
  return "/shmlink-test-" + tag + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(salt % 100000) + "-" + std::to_string(counter++);
}

// Runs `body` in a forked child; the child exits with body's return value (never returns
// into the test framework). Returns the child's pid.
inline pid_t ForkChild(const std::function<int()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int rc = 1;
    try {
      rc = body();
    } catch (...) {
      rc = 99;
    }
    ::_exit(rc);
  }
  return pid;
}

// Waits for `pid`; returns its exit code, or 128 + signal if it was killed.
inline int WaitChild(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace shmlink::testing

#endif  // SHMLINK_TESTS_TEST_UTIL_H_
