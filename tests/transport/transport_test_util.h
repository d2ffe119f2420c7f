// Copyright shmlink authors. SPDX-License-Identifier: MIT
// Helpers for the transport tests: unique abstract socket addresses and subprocesses (stock
// Python peers, example programs) with a line-oriented stdout. The general ones (socket
// paths, /dev/shm and fd inspection, waiting for children) are in tests/test_util.h.
#ifndef SHMLINK_TESTS_TRANSPORT_TRANSPORT_TEST_UTIL_H_
#define SHMLINK_TESTS_TRANSPORT_TRANSPORT_TEST_UTIL_H_

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace shmlink::testing {

inline std::string UniqueAbstract() { return "@shmlink-t-" + UniqueSuffix(); }

// A program run with its stdout on a pipe (stderr inherited), read line by line.
class Child {
 public:
  // Runs argv[0] (a path) with argv.
  explicit Child(const std::vector<std::string>& argv) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(p[1], 1);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(p[1]);
    out_ = p[0];
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (out_ >= 0) ::close(out_);
  }

  pid_t pid() const { return pid_; }

  // Next stdout line (without '\n'), or "" after `timeout` / EOF.
  std::string ReadLine(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto nl = buffered_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buffered_.substr(0, nl);
        buffered_.erase(0, nl + 1);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return "";
      pollfd pf{out_, POLLIN, 0};
      if (::poll(&pf, 1, static_cast<int>(left.count())) <= 0) return "";
      char buf[512];
      ssize_t n = ::read(out_, buf, sizeof(buf));
      if (n <= 0) return "";
      buffered_.append(buf, static_cast<size_t>(n));
    }
  }

  // Waits for it to end: its exit code, or 128 + signal (-1 if it never started).
  int Wait() const { return pid_ > 0 ? WaitChild(pid_) : -1; }

 private:
  pid_t pid_ = -1;
  int out_ = -1;  // read end of its stdout
  std::string buffered_;
};

}  // namespace shmlink::testing

#endif  // SHMLINK_TESTS_TRANSPORT_TRANSPORT_TEST_UTIL_H_
