// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// HolderLock: a liveness token the kernel vouches for. Whoever holds a role or a claim in a
// segment (SPSC producer/consumer, MPMC registry entry, ...) also holds an open-file-
// description (OFD) write lock on one byte of the segment's file, its *slot*. The kernel
// drops the lock when the holder's last reference to that open file description goes: at
// death (any signal, SIGKILL included), at execve (the token fd is O_CLOEXEC), or when the
// holder releases. Anyone with the segment mapped can then ask the kernel whether somebody
// holds a slot (ProbeHolder), with no /proc read, no new file descriptor, across PID
// namespaces, and without ever mistaking a live holder for a dead one.
//
//   auto token = HolderLock::Acquire(segment, kMySlot);  // kRoleTaken: a live holder has it
//   ...
//   if (ProbeHolder(segment, kPeerSlot) == HolderState::kDead) { /* peer gone: recover */ }
//
// Slots: a per-segment number space, one slot per role/claim (each segment kind assigns its
// own; see the layout headers). The locked byte lies at kHolderLockBase + slot, far beyond
// the end of any segment (locks beyond EOF need no file growth and never touch data).
//
// Mechanism (why each detail is as it is):
//  - The token is a *fresh* open file description of the segment's file, opened through
//    /proc/self/fd/<segment fd> (works for named and memfd segments, and after unlink;
//    falls back to shm_open by name, checked to be the same inode, if /proc is absent).
//    A fresh OFD matters: locks of one OFD never conflict with requests through the same
//    OFD, and an fd received by SCM_RIGHTS or inherited across fork *is* the same OFD.
//  - Probing uses the Segment's own fd (Segment::fd()), which shmlink never locks through:
//    every lock lives on a token OFD, so the segment fd always sees them as conflicts, even
//    when probing a slot held in the same process. No fd is opened at probe time, so a
//    checker out of file descriptors (EMFILE) still gets the right answer.
//  - fork: a forked child does not hold its parent's slots. Token fds are closed in the
//    child by a pthread_atfork child handler (otherwise the child's inherited copy would
//    keep the lock alive after the parent died); a HolderLock object inherited by the child
//    then owns nothing and its destruction does not touch the parent's lock. Tokens are
//    opened and closed under a mutex that the atfork prepare handler also takes, so no fork
//    can copy a token that is not yet registered, or one that is being closed. Between
//    fork() returning in the parent and the child running its handler (microseconds), the
//    child's copy still counts: a holder dying in that window is seen alive a moment
//    longer (late, never wrong).
//  - execve: tokens are O_CLOEXEC, so an exec'd holder (same pid, same start time) is seen
//    gone, as it holds no handle any more.
//  - Only kernel evidence says kDead: any probe failure is kUnknown (never treat as dead).
//  - A program that closes a token fd behind its HolderLock's back drops the lock (the
//    kernel cannot tell that from a death: a successor may take the slot while the object
//    lives). Release then closes the fd number only if it still names the token's file, so
//    a number reused for another file is left alone.
// OFD locks do not report the holder's pid (l_pid is -1); keep pid + start time in the
// segment (process_identity.h) as information for tools.
//
// Thread safety: HolderLock is move-only, not-thread-safe (one owner); Acquire and
// ProbeHolder are any-thread. Costs: Acquire opens one fd and makes one fcntl; the
// destructor closes it; ProbeHolder is one fcntl (slow paths only, never on a data path).
#ifndef SHMLINK_RINGBUF_HOLDER_LOCK_H_
#define SHMLINK_RINGBUF_HOLDER_LOCK_H_

#include <cstdint>

#include <shmlink/expected.h>
#include <shmlink/ring_error.h>
#include <shmlink/segment.h>

namespace shmlink {

// First locked byte offset (slot 0). 2^48: beyond any segment (Segment::kMaxSize is 2^36).
inline constexpr uint64_t kHolderLockBase = uint64_t{1} << 48;
// Slots are numbered [0, kMaxHolderSlots).
inline constexpr uint64_t kMaxHolderSlots = uint64_t{1} << 48;
// The slot every segment kind reserves for its creator: held for as long as the object that
// created the segment lives, so stale-segment removal can ask the kernel whether the
// creator still runs (its pid + start time in the header stay, for tools).
inline constexpr uint64_t kCreatorHolderSlot = kMaxHolderSlots - 1;

// What the kernel says about a slot.
//  kAlive:   some open file description other than the segment's own holds the slot's lock,
//            i.e. a live process holds it (possibly the caller itself through a HolderLock).
//  kDead:    nobody holds it: its holder died, exec'd, released it, or never took it. Pair it
//            with the shared state that names a holder to conclude "the holder died".
//  kUnknown: the probe failed (bad fd, kernel error). Never act on it as if dead.
enum class HolderState { kAlive, kDead, kUnknown };

const char* HolderStateName(HolderState s) noexcept;

class HolderLock {
 public:
  // Takes the lock on `slot` of `segment`'s file through a fresh open file description.
  // Errors: kRoleTaken if another holder (any process, including this one) holds the slot;
  // kInvalidArgument for slot >= kMaxHolderSlots or an invalid segment; errno values of the
  // open (e.g. EMFILE) or of fcntl. On any error nothing is held.
  [[nodiscard]] static Expected<HolderLock> Acquire(const Segment& segment, uint64_t slot);

  HolderLock() = default;  // holds nothing
  HolderLock(HolderLock&& other) noexcept;
  HolderLock& operator=(HolderLock&& other) noexcept;
  HolderLock(const HolderLock&) = delete;
  HolderLock& operator=(const HolderLock&) = delete;
  // Releases the slot (if this process still holds it: not in a forked child).
  ~HolderLock();

  // Releases now (idempotent). In a forked child it only forgets the parent's token.
  void Release() noexcept;

  // True while this object owns a token (false after Release, move, or when default-made).
  // A HolderLock inherited across fork still says true but holds nothing in the child.
  bool owns() const noexcept { return serial_ != 0; }
  // True if this process holds the token: false in a forked child that inherited this
  // object (the parent still holds it), after Release or move, or when default-made. Takes
  // the registry's mutex: for destructors and checks, not for data paths.
  bool held_here() const noexcept;
  uint64_t slot() const noexcept { return slot_; }

 private:
  HolderLock(uint64_t serial, uint64_t slot) noexcept : serial_(serial), slot_(slot) {}
  uint64_t serial_ = 0;  // registry key of the token fd (0: none)
  uint64_t slot_ = 0;
};

// Asks the kernel whether a live holder holds `slot` of `segment`, through the segment's
// own fd (opens nothing). any-thread; one fcntl.
HolderState ProbeHolder(const Segment& segment, uint64_t slot) noexcept;

// Like ProbeHolder for the `count` slots [first, first + count) at once (one fcntl): kAlive
// if any of them is held, kDead if none is, kUnknown if the probe failed or the range is
// invalid. For "does anybody still use this segment?" checks.
HolderState ProbeAnyHolder(const Segment& segment, uint64_t first, uint64_t count) noexcept;

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_HOLDER_LOCK_H_
