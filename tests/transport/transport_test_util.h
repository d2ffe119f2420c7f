// Helpers for the transport tests: unique socket addresses, /dev/shm inspection, and
// subprocesses (stock Python peers) with a line-oriented stdout.
#ifndef SHMLINK_TESTS_TRANSPORT_TRANSPORT_TEST_UTIL_H_
#define SHMLINK_TESTS_TRANSPORT_TRANSPORT_TEST_UTIL_H_

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <random>
#include <string>
#include <vector>

namespace shmlink::testing {

inline std::string UniqueTag() {
  static std::atomic<int> counter{0};
  static const unsigned salt = std::random_device{}();
  return std::to_string(::getpid()) + "-" + std::to_string(salt % 100000) + "-" +
         std::to_string(counter++);
}

// A socket path in /tmp (Bazel's TEST_TMPDIR can exceed sun_path's 108 bytes).
inline std::string UniqueSocketPath() { return "/tmp/shmlink-t-" + UniqueTag() + ".sock"; }
inline std::string UniqueAbstract() { return "@shmlink-t-" + UniqueTag(); }

// Names in /dev/shm starting with `prefix`.
inline std::vector<std::string> ShmFiles(const std::string& prefix) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n.rfind(prefix, 0) == 0) out.push_back(n);
    }
    ::closedir(d);
  }
  return out;
}

// Number of open file descriptors of this process.
inline int OpenFdCount() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
  }
  return n - 1;  // the directory stream itself
}

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
