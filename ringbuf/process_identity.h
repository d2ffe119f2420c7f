// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// ProcessIdentity: a process named by pid *and* start time, so that a reused pid is never
// mistaken for the process that held a role or a slot before it died.
//
// It packs into one 64-bit word (see Pack) so that shared-memory owner fields can be
// claimed and handed over with a single compare-and-swap. 0 means "nobody".
#ifndef SHMLINK_RINGBUF_PROCESS_IDENTITY_H_
#define SHMLINK_RINGBUF_PROCESS_IDENTITY_H_

#include <sys/types.h>

#include <atomic>
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

// Unknown is not dead. Every function below says "dead" only on the kernel's evidence:
// /proc/<pid>/stat names another process (pid reused) or a zombie, or there is no process
// <pid> at all (ENOENT/ESRCH, confirmed by kill(pid, 0)). A read that fails otherwise -
// the caller is out of fds (EMFILE/ENFILE), /proc/<pid> is unreadable (EACCES, hidepid),
// memory is short, the line cannot be parsed - decides nothing: it is reported as an error
// or as kUnknown, which every caller treats like alive (keep waiting, keep the role).

// The calling process. A successful read is cached (re-read after fork()); a failed one is
// not (the next call reads again) and is returned as the errno of the failed read (e.g.
// std::errc::too_many_files_open).
[[nodiscard]] Expected<ProcessIdentity> SelfIdentity() noexcept;
// SelfIdentity().Pack(), or {getpid(), 0} if it cannot be read: for fields that only name a
// process (a segment's creator), never for claims. The others treat start time 0 as "this
// pid, start unknown": it dies only when no process has that pid any more.
uint64_t SelfIdentityOrPidOnly() noexcept;

// Reads the identity of `pid` from /proc: start_ticks == 0 if there is no such process or it
// is a zombie (killed but not yet reaped counts as dead); the errno of the read if it
// cannot tell (unknown).
[[nodiscard]] Expected<ProcessIdentity> TryIdentityOf(pid_t pid) noexcept;
// TryIdentityOf for tests and tools: an unknown is folded into start_ticks == 0 too, so it
// must not decide that a process died.
ProcessIdentity IdentityOf(pid_t pid) noexcept;

// False only if the process `id` names is known to be gone (see above): another start
// time, a zombie, or no process with its pid. True if it runs - or if that cannot be read
// (unknown counts as alive). Costs one read of /proc/<pid>/stat: call it on slow paths only.
bool IsAlive(ProcessIdentity id) noexcept;
inline bool IsAlivePacked(uint64_t word) noexcept { return IsAlive(ProcessIdentity::Unpack(word)); }

// Finer than IsAlive, for crash recovery that must not wait for a killed process's exit:
//  kDead:  gone, zombie, pid reused, or exiting (PF_EXITING: it never runs user code again,
//          although the kernel may take long to tear it down, e.g. a large address space).
//  kDying: SIGKILL is pending (in its own or its thread group's pending set) but it has not
//          started exiting: it runs at most the few user instructions before it takes the
//          signal (at its next kernel entry, which kill() forces at once), then kernel code
//          only. A kill()ed process can stay in this state for a long time when it waits
//          for a CPU on a loaded machine. Its state may still change under you: recover
//          what it holds, but do not let anybody else reuse what it might still touch.
//          There is no window: from kill() until it is reaped, one of kDying/kDead holds.
//  kAlive: anything else (what IsAlive calls alive, minus the two cases above).
//  kUnknown: /proc could not be read (see above); treat it like kAlive, never recover.
// One read of /proc/<pid>/stat, plus one of /proc/<pid>/status if it looks alive. any-thread.
enum class Liveness { kAlive, kDying, kDead, kUnknown };
Liveness LivenessOf(ProcessIdentity id) noexcept;
inline Liveness LivenessOfPacked(uint64_t word) noexcept {
  return LivenessOf(ProcessIdentity::Unpack(word));
}

// Claims an owner word in shared memory for the calling process: succeeds if the word is
// free (0) or names a dead process (taken over with one CAS). kRoleTaken if a live process
// (including this one) holds it, or one whose liveness cannot be read (unknown is not
// dead). Fails with SelfIdentity's error if the caller's own identity cannot be read: a
// claim never writes an owner that others could not check. Returns the packed identity written. If
// `took_over` is given, it is set to whether the word named a dead process (a takeover).
[[nodiscard]] Expected<uint64_t> ClaimOwnerWord(std::atomic<uint64_t>& word,
                                                bool* took_over = nullptr) noexcept;
// Frees the word if it still holds `me`.
void ReleaseOwnerWord(std::atomic<uint64_t>& word, uint64_t me) noexcept;

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_PROCESS_IDENTITY_H_
