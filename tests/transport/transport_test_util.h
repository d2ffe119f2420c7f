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

struct Child {
  pid_t pid = -1;
  int out = -1;  // read end of the child's stdout
  std::string buffered;
};

// Runs argv[0] with argv, stdout to a pipe (stderr inherited).
inline Child Spawn(const std::vector<std::string>& argv) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return {};
  Child c;
  c.pid = ::fork();
  if (c.pid == 0) {
    ::dup2(p[1], 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(p[1]);
  c.out = p[0];
  return c;
}

// Next stdout line of `c` (without '\n'), or "" after `timeout` / EOF.
inline std::string ReadLine(Child& c, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto nl = c.buffered.find('\n');
    if (nl != std::string::npos) {
      std::string line = c.buffered.substr(0, nl);
      c.buffered.erase(0, nl + 1);
      return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return "";
    pollfd pf{c.out, POLLIN, 0};
    if (::poll(&pf, 1, static_cast<int>(left.count())) <= 0) return "";
    char buf[512];
    ssize_t n = ::read(c.out, buf, sizeof(buf));
    if (n <= 0) return "";
    c.buffered.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace shmlink::testing

#endif  // SHMLINK_TESTS_TRANSPORT_TRANSPORT_TEST_UTIL_H_
