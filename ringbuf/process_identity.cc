// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "ringbuf/process_identity.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace shmlink {

ProcessIdentity IdentityOf(pid_t pid) noexcept {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {static_cast<uint32_t>(pid), 0};
  char buf[1024];
  ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
  ::close(fd);
  if (n <= 0) return {static_cast<uint32_t>(pid), 0};
  buf[n] = '\0';
  // "pid (comm) S ppid ...": comm may contain spaces and ')', so scan from the last ')'.
  char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return {static_cast<uint32_t>(pid), 0};
  p += 2;
  const char state = *p;
  if (state == 'Z' || state == 'X' || state == 'x') return {static_cast<uint32_t>(pid), 0};
  // After the state (field 3), start time is field 22: skip 19 more fields.
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr) return {static_cast<uint32_t>(pid), 0};
    ++p;
  }
  uint64_t ticks = std::strtoull(p, nullptr, 10);
  // A process started at tick 0 would look dead; that is only the idle task.
  return {static_cast<uint32_t>(pid), ticks == 0 ? 1 : ticks};
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

Expected<uint64_t> ClaimOwnerWord(std::atomic<uint64_t>& word) noexcept {
  const uint64_t me = SelfIdentity().Pack();
  uint64_t seen = 0;
  // SYNC(owner): acq_rel CAS; a successful claim happens-after the previous holder's
  // release (ReleaseOwnerWord), so its last writes to the role's state are visible.
  if (word.compare_exchange_strong(seen, me, std::memory_order_acq_rel)) return me;
  if (seen == me || IsAlivePacked(seen)) return RingErrc::kRoleTaken;
  // Dead holder: take over only if nobody else did meanwhile.
  if (word.compare_exchange_strong(seen, me, std::memory_order_acq_rel)) return me;
  return RingErrc::kRoleTaken;
}

void ReleaseOwnerWord(std::atomic<uint64_t>& word, uint64_t me) noexcept {
  uint64_t expected = me;
  // SYNC(owner): release, pairs with the acq_rel CAS of the next claimant.
  word.compare_exchange_strong(expected, 0, std::memory_order_release, std::memory_order_relaxed);
}

}  // namespace shmlink
