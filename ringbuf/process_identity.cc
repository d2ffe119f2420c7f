// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

#include <shmlink/process_identity.h>

namespace shmlink {

namespace {

// The fields of /proc/<pid>/stat that liveness needs. ok == false: no such process (or an
// unreadable line).
struct StatFields {
  bool ok = false;
  char state = 0;            // field 3
  uint64_t flags = 0;        // field 9 (PF_*)
  uint64_t start_ticks = 0;  // field 22
  uint64_t sig_pending = 0;  // field 31 (the main thread's pending signals)
};

StatFields ReadStat(pid_t pid) noexcept {
  StatFields f;
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return f;
  char buf[1024];
  ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
  ::close(fd);
  if (n <= 0) return f;
  buf[n] = '\0';
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
  f.ok = true;
  return f;
}

constexpr uint64_t kPfExiting = 0x4;                // PF_EXITING (include/linux/sched.h)
constexpr uint64_t kSigKillBit = uint64_t{1} << 8;  // SIGKILL (9) in a pending-signal mask

bool ZombieState(char state) { return state == 'Z' || state == 'X' || state == 'x'; }

// Whether SIGKILL is in the thread group's shared pending set ("ShdPnd" of
// /proc/<pid>/status). kill() puts it there and it stays until the process is reaped: the
// fatal-signal path takes SIGKILL off the thread's own pending set (field 31 of stat) but
// never dequeues the shared one. nullopt: no such process (any more).
std::optional<bool> SharedSigKillPending(pid_t pid) noexcept {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/status", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[4096];
  ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  buf[n] = '\0';
  const char* p = std::strstr(buf, "\nShdPnd:");
  if (p == nullptr) return false;  // unknown format: fall back to the stat fields alone
  return (std::strtoull(p + 8, nullptr, 16) & kSigKillBit) != 0;
}

}  // namespace

ProcessIdentity IdentityOf(pid_t pid) noexcept {
  const StatFields f = ReadStat(pid);
  if (!f.ok || ZombieState(f.state)) return {static_cast<uint32_t>(pid), 0};
  // A process started at tick 0 would look dead; that is only the idle task.
  return {static_cast<uint32_t>(pid), f.start_ticks == 0 ? 1 : f.start_ticks};
}

ProcessIdentity SelfIdentity() noexcept {
  // Cached per pid: a forked child sees a different getpid() and re-reads.
  static thread_local pid_t cached_pid = 0;
  static thread_local ProcessIdentity cached;
  pid_t now = ::getpid();
  if (now != cached_pid) {
    cached = IdentityOf(now);
    cached_pid = now;
  }
  return cached;
}

bool IsAlive(ProcessIdentity id) noexcept {
  if (id.pid == 0) return false;
  ProcessIdentity current = IdentityOf(static_cast<pid_t>(id.pid));
  if (current.start_ticks == 0) return false;
  // Compare only the bits that survive packing.
  constexpr uint64_t kMask = (uint64_t{1} << (64 - ProcessIdentity::kPidBits)) - 1;
  return (current.start_ticks & kMask) == (id.start_ticks & kMask);
}

Liveness LivenessOf(ProcessIdentity id) noexcept {
  if (id.pid == 0) return Liveness::kDead;
  const StatFields f = ReadStat(static_cast<pid_t>(id.pid));
  if (!f.ok || ZombieState(f.state)) return Liveness::kDead;
  constexpr uint64_t kMask = (uint64_t{1} << (64 - ProcessIdentity::kPidBits)) - 1;
  const uint64_t ticks = f.start_ticks == 0 ? 1 : f.start_ticks;
  if ((ticks & kMask) != (id.start_ticks & kMask)) return Liveness::kDead;  // pid reused
  if (f.flags & kPfExiting) return Liveness::kDead;
  if (f.sig_pending & kSigKillBit) return Liveness::kDying;
  // Not yet visible above: the window between the process taking SIGKILL off its own
  // pending set (get_signal) and setting PF_EXITING (do_exit). It is short on an idle
  // machine (tens of us measured) but unbounded if the process is preempted inside it, and
  // a recoverer that took it for alive there waited for its next pass. The shared pending
  // set keeps SIGKILL through that window, so only this second read closes it.
  const std::optional<bool> killed = SharedSigKillPending(static_cast<pid_t>(id.pid));
  if (!killed) return Liveness::kDead;  // gone between the two reads
  if (*killed) return Liveness::kDying;
  return Liveness::kAlive;
}

Expected<uint64_t> ClaimOwnerWord(std::atomic<uint64_t>& word, bool* took_over) noexcept {
  const uint64_t me = SelfIdentity().Pack();
  uint64_t seen = 0;
  if (took_over != nullptr) *took_over = false;
  // SYNC(owner): acq_rel CAS; a successful claim happens-after the previous holder's
  // release (ReleaseOwnerWord), so its last writes to the role's state are visible.
  if (word.compare_exchange_strong(seen, me, std::memory_order_acq_rel)) return me;
  if (seen == me || IsAlivePacked(seen)) return RingErrc::kRoleTaken;
  // Dead holder: take over only if nobody else did meanwhile.
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
