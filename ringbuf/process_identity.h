// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// ProcessIdentity: a process named by pid *and* start time, so that a reused pid is never
// mistaken for the process that held a role or a slot before it died.
//
// It packs into one 64-bit word (see Pack) so that a shared-memory owner field names its
// holder in one store. 0 means "nobody".
#ifndef SHMLINK_RINGBUF_PROCESS_IDENTITY_H_
#define SHMLINK_RINGBUF_PROCESS_IDENTITY_H_

#include <sys/types.h>

#include <cstdint>

#include <shmlink/expected.h>
#include <shmlink/ring_error.h>

namespace shmlink {

struct ProcessIdentity {
  uint32_t pid = 0;
  // Start time in clock ticks since boot (field 22 of /proc/<pid>/stat).
  uint64_t start_ticks = 0;

  // pid in the low 22 bits (Linux's PID_MAX_LIMIT is 2^22), start ticks above.
  static constexpr int kPidBits = 22;
  uint64_t Pack() const noexcept {
    return (start_ticks << kPidBits) | (pid & ((uint64_t{1} << kPidBits) - 1));
  }
  static ProcessIdentity Unpack(uint64_t word) noexcept {
    return {static_cast<uint32_t>(word & ((uint64_t{1} << kPidBits) - 1)), word >> kPidBits};
  }
};

// Names only. Whether a holder lives is decided by its holder lock (holder_lock.h), never
// by these: pid + start time name holders in segments for tools (the shmlink command) and
// logs. Reads are still honest: "no such process" only on the kernel's word (ENOENT/ESRCH,
// confirmed by kill(pid, 0)), and a read that fails otherwise (EMFILE, EACCES, hidepid, an
// unparsable line) is reported as an error, not as a death.

// The calling process. A successful read is cached (re-read after fork()); a failed one is
// not (the next call reads again) and is returned as the errno of the failed read (e.g.
// std::errc::too_many_files_open).
[[nodiscard]] Expected<ProcessIdentity> SelfIdentity() noexcept;
// SelfIdentity().Pack(), or {getpid(), 0} if it cannot be read: for fields that only name a
// process (a segment's creator, a role's holder; its lock decides whether it lives). Tools
// read start time 0 as "this pid, start unknown".
uint64_t SelfIdentityOrPidOnly() noexcept;

// Reads the identity of `pid` from /proc: start_ticks == 0 if there is no such process or it
// is a zombie (killed but not yet reaped counts as dead); the errno of the read if it
// cannot tell (unknown).
[[nodiscard]] Expected<ProcessIdentity> TryIdentityOf(pid_t pid) noexcept;
// TryIdentityOf for tests and tools: an unknown is folded into start_ticks == 0 too, so it
// must not decide that a process died.
ProcessIdentity IdentityOf(pid_t pid) noexcept;

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_PROCESS_IDENTITY_H_
