// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Helpers shared by shmlink's tests: unique shm names and socket paths, /dev/shm and fd
// inspection, child processes (forked or spawned, waited for with or without a bound),
// one-shot signals between processes, memory shared with forked children, and byte/string
// conversions.
#ifndef SHMLINK_TESTS_TEST_UTIL_H_
#define SHMLINK_TESTS_TEST_UTIL_H_

#include <dirent.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <new>
#include <random>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

extern char** environ;

namespace shmlink::testing {

// Sanitized builds run the same tests with smaller counts (they are several times slower).
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

// "<pid>-<salt>-<n>": unique to this process and call, so parallel tests never collide.
inline std::string UniqueSuffix() {
  static std::atomic<int> counter{0};
  static const unsigned salt = std::random_device{}();
  return std::to_string(::getpid()) + "-" + std::to_string(salt % 100000) + "-" +
         std::to_string(counter++);
}

// A unique shm name.
inline std::string UniqueShmName(const std::string& tag) {
  return "/shmlink-test-" + tag + "-" + UniqueSuffix();
}

// A unique socket path in /tmp (Bazel's TEST_TMPDIR can exceed sun_path's 108 bytes).
inline std::string UniqueSocketPath(const std::string& tag = "t") {
  return "/tmp/shmlink-" + tag + "-" + UniqueSuffix() + ".sock";
}

// True if the POSIX shm `name` ("/...") exists in /dev/shm.
inline bool ShmExists(const std::string& name) {
  return ::access(("/dev/shm" + name).c_str(), F_OK) == 0;
}

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

// The fds of this process open on the same file as `fd` (same st_dev/st_ino), other than
// `fd` itself: e.g. the liveness tokens a library opened on a segment's file.
inline std::set<int> FdsOnSameFile(int fd) {
  std::set<int> out;
  struct stat want {};
  if (::fstat(fd, &want) != 0) return out;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return out;
  const int dir_fd = ::dirfd(d);
  while (dirent* e = ::readdir(d)) {
    const int other = std::atoi(e->d_name);
    if (e->d_name[0] == '.' || other == dir_fd || other == fd) continue;
    struct stat st {};
    if (::fstat(other, &st) == 0 && st.st_dev == want.st_dev && st.st_ino == want.st_ino) {
      out.insert(other);
    }
  }
  ::closedir(d);
  return out;
}

// Polls `cond` every millisecond for up to `limit`: for what the kernel completes
// asynchronously to the test (a killed process's files closed, a lock dropped).
template <typename Cond>
bool Eventually(Cond cond, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
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

// Path of a Bazel runfile given relative to the workspace root (`rel` itself outside Bazel,
// where the working directory is the runfiles root).
inline std::string Runfile(const std::string& rel) {
  if (const char* srcdir = std::getenv("TEST_SRCDIR")) {
    const char* ws = std::getenv("TEST_WORKSPACE");
    return std::string(srcdir) + "/" + (ws ? ws : "shmlink") + "/" + rel;
  }
  return rel;
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

// Starts the program `path` with `args` (stdio inherited); returns its pid, or -1.
inline pid_t SpawnProgram(const std::string& path, std::vector<std::string> args) {
  args.insert(args.begin(), path);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (::posix_spawn(&pid, path.c_str(), nullptr, nullptr, argv.data(), environ) != 0) return -1;
  return pid;
}

// A wait status as one number: the exit code, or 128 + signal if it was killed.
inline int ExitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Waits for `pid`; returns its exit code, or 128 + signal if it was killed.
inline int WaitChild(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
  }
  return ExitCodeOf(status);
}

// WaitChildFor's result for a child that overstayed its limit.
inline constexpr int kChildTimedOut = -2;

// Waits for `pid` at most `limit`; returns its exit code, or 128 + signal, or
// kChildTimedOut if it overstays (then it is SIGKILLed and reaped). `usage` (optional)
// receives its rusage.
inline int WaitChildFor(pid_t pid, std::chrono::milliseconds limit, rusage* usage = nullptr) {
  const auto end = std::chrono::steady_clock::now() + limit;
  int status = 0;
  rusage ru{};
  for (;;) {
    pid_t r = ::wait4(pid, &status, WNOHANG, &ru);
    if (r == pid) break;
    if (std::chrono::steady_clock::now() > end) {
      ::kill(pid, SIGKILL);
      ::wait4(pid, &status, 0, &ru);
      return kChildTimedOut;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (usage != nullptr) *usage = ru;
  return ExitCodeOf(status);
}

// True once the child `pid` has exited (it may be a zombie); does not reap it.
inline bool HasExited(pid_t pid) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
         info.si_pid == pid;
}

// One-shot signal between processes over a pipe: create it before fork, Notify() on one
// side, Wait() on the other. Wait() returns false if the pipe could not be made.
struct Signal {
  int fds[2] = {-1, -1};
  Signal() {
    if (::pipe(fds) != 0) fds[0] = fds[1] = -1;
  }
  ~Signal() {
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
  }
  Signal(const Signal&) = delete;
  Signal& operator=(const Signal&) = delete;
  void Notify() const {
    char c = 1;
    (void)!::write(fds[1], &c, 1);
  }
  bool Wait() const {
    char c;
    return ::read(fds[0], &c, 1) == 1;
  }
};

// A value-initialised T in anonymous shared memory, inherited by forked children (it never
// appears in /dev/shm). Aborts if it cannot be mapped. Free with DeleteShared.
template <typename T>
T* NewShared() {
  void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("NewShared: mmap");
    std::abort();
  }
  return new (p) T();
}
template <typename T>
void DeleteShared(T* p) {
  p->~T();
  ::munmap(p, sizeof(T));
}

// While in scope, this process is out of file descriptors: RLIMIT_NOFILE's soft limit is
// lowered to just above the fds in use and the rest are filled, so any open() fails with
// EMFILE. Restores the limit and closes the fillers on scope exit. Sanitizer runtimes need
// fds of their own: check results after the scope.
struct FdExhaustion {
  rlimit saved{};
  std::vector<int> fillers;
  FdExhaustion() {
    ::getrlimit(RLIMIT_NOFILE, &saved);
    rlimit low = saved;
    low.rlim_cur = static_cast<rlim_t>(OpenFdCount() + 8);
    ::setrlimit(RLIMIT_NOFILE, &low);
    for (;;) {
      int fd = ::dup(0);
      if (fd < 0) break;
      fillers.push_back(fd);
    }
  }
  ~FdExhaustion() {
    for (int fd : fillers) ::close(fd);
    ::setrlimit(RLIMIT_NOFILE, &saved);
  }
  FdExhaustion(const FdExhaustion&) = delete;
  FdExhaustion& operator=(const FdExhaustion&) = delete;
};

// The bytes of `s`, and back.
inline std::span<const std::byte> Bytes(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}
inline std::string Str(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

}  // namespace shmlink::testing

#endif  // SHMLINK_TESTS_TEST_UTIL_H_
