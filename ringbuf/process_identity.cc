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

// The fields of /proc/<pid>/stat that liveness needs (valid if result == kOk).
struct StatFields {
  ReadResult result = ReadResult::kUnknown;
  int err = 0;               // errno of the failed read (EIO: unparsable)
  char state = 0;            // field 3
  uint64_t flags = 0;        // field 9 (PF_*)
  uint64_t start_ticks = 0;  // field 22
  uint64_t sig_pending = 0;  // field 31 (the main thread's pending signals)
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
  for (int field = 3; field < 31; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr) return f;
    ++p;
    if (field + 1 == 9) f.flags = std::strtoull(p, nullptr, 10);
    if (field + 1 == 22) f.start_ticks = std::strtoull(p, nullptr, 10);
    if (field + 1 == 31) f.sig_pending = std::strtoull(p, nullptr, 10);
  }
  f.result = ReadResult::kOk;
  f.err = 0;
  return f;
}

constexpr uint64_t kPfExiting = 0x4;                // PF_EXITING (include/linux/sched.h)
constexpr uint64_t kSigKillBit = uint64_t{1} << 8;  // SIGKILL (9) in a pending-signal mask
constexpr uint64_t kTicksMask = (uint64_t{1} << (64 - ProcessIdentity::kPidBits)) - 1;

bool ZombieState(char state) { return state == 'Z' || state == 'X' || state == 'x'; }

// Whether SIGKILL is in the thread group's shared pending set ("ShdPnd" of
// /proc/<pid>/status). kill() puts it there and it stays until the process is reaped: the
// fatal-signal path takes SIGKILL off the thread's own pending set (field 31 of stat) but
// never dequeues the shared one. kGone: no such process (any more); kUnknown: unreadable.
ReadResult SharedSigKillPending(pid_t pid, bool* killed) noexcept {
  char buf[4096];
  int err = 0;
  const ReadResult r = ReadProcFile(pid, "status", buf, sizeof(buf), &err);
  if (r != ReadResult::kOk) return r;
  const char* p = std::strstr(buf, "\nShdPnd:");
  // Unknown format: fall back to the stat fields alone.
  *killed = p != nullptr && (std::strtoull(p + 8, nullptr, 16) & kSigKillBit) != 0;
  return ReadResult::kOk;
}

// Liveness of `id` from its stat fields and, with check_status (LivenessOf), the exiting
// flag and pending SIGKILL (then also its status file).
Liveness LivenessFromStat(ProcessIdentity id, bool check_status) noexcept {
  if (id.pid == 0) return Liveness::kDead;  // "nobody"
  const StatFields f = ReadStat(static_cast<pid_t>(id.pid));
  if (f.result == ReadResult::kGone) return Liveness::kDead;
  if (f.result != ReadResult::kOk) return Liveness::kUnknown;
  if (id.start_ticks == 0) {
    // A word written while its process could not read its own start time (see
    // SelfIdentity): the process `pid` may be it. Only its absence would be evidence.
    return Liveness::kUnknown;
  }
  const uint64_t ticks = f.start_ticks == 0 ? 1 : f.start_ticks;
  if ((ticks & kTicksMask) != (id.start_ticks & kTicksMask)) return Liveness::kDead;  // reused
  if (ZombieState(f.state)) return Liveness::kDead;
  if (!check_status) return Liveness::kAlive;  // IsAlive: running, exiting or not
  if (f.flags & kPfExiting) return Liveness::kDead;
  if (f.sig_pending & kSigKillBit) return Liveness::kDying;
  // Not yet visible above: the window between the process taking SIGKILL off its own
  // pending set (get_signal) and setting PF_EXITING (do_exit). It is short on an idle
  // machine (tens of us measured) but unbounded if the process is preempted inside it, and
  // a recoverer that took it for alive there waited for its next pass. The shared pending
  // set keeps SIGKILL through that window, so only this second read closes it.
  bool killed = false;
  const ReadResult r = SharedSigKillPending(static_cast<pid_t>(id.pid), &killed);
  if (r == ReadResult::kGone) return Liveness::kDead;  // gone between the two reads
  if (r != ReadResult::kOk) return Liveness::kUnknown;
  return killed ? Liveness::kDying : Liveness::kAlive;
}

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

bool IsAlive(ProcessIdentity id) noexcept {
  return LivenessFromStat(id, /*check_status=*/false) != Liveness::kDead;
}

Liveness LivenessOf(ProcessIdentity id) noexcept {
  return LivenessFromStat(id, /*check_status=*/true);
}

Expected<uint64_t> ClaimOwnerWord(std::atomic<uint64_t>& word, bool* took_over) noexcept {
  if (took_over != nullptr) *took_over = false;
  // Never claim under a name others cannot check (start time unknown): fail instead.
  auto self = SelfIdentity();
  if (!self) return MakeUnexpected(self.error());
  const uint64_t me = self->Pack();
  uint64_t seen = 0;
  // SYNC(owner): acq_rel CAS; a successful claim happens-after the previous holder's
  // release (ReleaseOwnerWord), so its last writes to the role's state are visible.
  if (word.compare_exchange_strong(seen, me, std::memory_order_acq_rel)) return me;
  // Unknown is not dead: a holder whose liveness cannot be read keeps the role.
  if (seen == me || IsAlivePacked(seen)) return RingErrc::kRoleTaken;
  // Dead holder (the kernel says so): take over only if nobody else did meanwhile.
  if (word.compare_exchange_strong(seen, me, std::memory_order_acq_rel)) {
    if (took_over != nullptr) *took_over = true;
    return me;
  }
  return RingErrc::kRoleTaken;
}

void ReleaseOwnerWord(std::atomic<uint64_t>& word, uint64_t me) noexcept {
  uint64_t expected = me;
  // SYNC(owner): release, pairs with the acq_rel CAS of the next claimant.
  word.compare_exchange_strong(expected, 0, std::memory_order_release, std::memory_order_relaxed);
}

}  // namespace shmlink
