// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <shmlink/process_identity.h>

namespace shmlink {

namespace {

// What a read of /proc/<pid>/... says about the process. kGone only on the kernel's word
// that there is no such process (ENOENT/ESRCH, confirmed by kill(pid, 0)): a read that fails
// for any other reason (EMFILE, ENFILE, EACCES, ENOMEM, an unparsable line...) says nothing
// about the process, and unknown is not dead.
enum class ReadResult { kOk, kGone, kUnknown };

// After /proc/<pid>/... was not found: is there really no process `pid`? /proc may hide it
// (hidepid=invisible) or belong to another PID namespace; kill(pid, 0) asks the kernel in
// ours. EPERM means it exists and is not ours to signal.
ReadResult ConfirmGone(pid_t pid) noexcept {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return ReadResult::kGone;
  return ReadResult::kUnknown;
}

// Reads /proc/<pid>/<file> into buf (NUL-terminated). kOk: n bytes read.
ReadResult ReadProcFile(pid_t pid, const char* file, char* buf, size_t size, int* err) noexcept {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/%s", static_cast<int>(pid), file);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = errno;
    if (*err == ENOENT || *err == ESRCH) return ConfirmGone(pid);
    return ReadResult::kUnknown;
  }
  ssize_t n;
  do {
    n = ::read(fd, buf, size - 1);
  } while (n < 0 && errno == EINTR);
  *err = n < 0 ? errno : EIO;
  ::close(fd);
  // The process was reaped after the open: its /proc files then fail with ESRCH.
  if (n < 0 && *err == ESRCH) return ReadResult::kGone;
  if (n <= 0) return ReadResult::kUnknown;
  buf[n] = '\0';
  *err = 0;
  return ReadResult::kOk;
}

// The fields of /proc/<pid>/stat that an identity needs (valid if result == kOk).
struct StatFields {
  ReadResult result = ReadResult::kUnknown;
  int err = 0;               // errno of the failed read (EIO: unparsable)
  char state = 0;            // field 3
  uint64_t start_ticks = 0;  // field 22
};

StatFields ReadStat(pid_t pid) noexcept {
  StatFields f;
  char buf[1024];
  f.result = ReadProcFile(pid, "stat", buf, sizeof(buf), &f.err);
  if (f.result != ReadResult::kOk) return f;
  // Unparsable: unknown, never dead.
  f.result = ReadResult::kUnknown;
  f.err = EIO;
  // "pid (comm) S ppid ...": comm may contain spaces and ')', so scan from the last ')'.
  char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return f;
  p += 2;
  f.state = *p;
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr) return f;
    ++p;
  }
  f.start_ticks = std::strtoull(p, nullptr, 10);
  f.result = ReadResult::kOk;
  f.err = 0;
  return f;
}

bool ZombieState(char state) { return state == 'Z' || state == 'X' || state == 'x'; }

}  // namespace

Expected<ProcessIdentity> TryIdentityOf(pid_t pid) noexcept {
  const StatFields f = ReadStat(pid);
  if (f.result == ReadResult::kGone) return ProcessIdentity{static_cast<uint32_t>(pid), 0};
  if (f.result != ReadResult::kOk) return ErrnoError(f.err != 0 ? f.err : EIO);
  if (ZombieState(f.state)) return ProcessIdentity{static_cast<uint32_t>(pid), 0};
  // A process started at tick 0 would look dead; that is only the idle task.
  return ProcessIdentity{static_cast<uint32_t>(pid), f.start_ticks == 0 ? 1 : f.start_ticks};
}

ProcessIdentity IdentityOf(pid_t pid) noexcept {
  auto id = TryIdentityOf(pid);
  return id ? *id : ProcessIdentity{static_cast<uint32_t>(pid), 0};
}

Expected<ProcessIdentity> SelfIdentity() noexcept {
  // Cached per pid: a forked child sees a different getpid() and re-reads. Only a
  // successful read is cached: a failed one (e.g. EMFILE at that moment) is retried on the
  // next call, never remembered as {pid, 0}.
  static thread_local pid_t cached_pid = 0;
  static thread_local ProcessIdentity cached;
  const pid_t now = ::getpid();
  if (now != cached_pid) {
    auto id = TryIdentityOf(now);
    if (!id) return id;
    if (id->start_ticks == 0) return ErrnoError(EIO);  // ourselves gone? never cache that
    cached = *id;
    cached_pid = now;
  }
  return cached;
}

uint64_t SelfIdentityOrPidOnly() noexcept {
  auto id = SelfIdentity();
  if (id) return id->Pack();
  return ProcessIdentity{static_cast<uint32_t>(::getpid()), 0}.Pack();
}

}  // namespace shmlink
