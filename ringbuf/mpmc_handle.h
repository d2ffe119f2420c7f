// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// internal::MpmcHandle: the part of an MPMC queue handle that MpmcProducer and
// MpmcConsumer (mpmc_queue.h) share - the mapping the handle keeps alive, the registry
// entry it was given and the HolderLock that holds it (both freed when the handle is
// destroyed), the entry's generation at registration, and the schedule of its liveness
// checks of the other participants. Not an API of its own: use the handles.
//
// Thread safety: one thread at a time, like the handle that holds it.
#ifndef SHMLINK_RINGBUF_MPMC_HANDLE_H_
#define SHMLINK_RINGBUF_MPMC_HANDLE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <shmlink/holder_lock.h>
#include <shmlink/mpmc_layout.h>
#include <shmlink/ring_error.h>
#include <shmlink/segment.h>

namespace shmlink::internal {

class MpmcHandle {
 public:
  // Takes over registry entry `idx` of the queue `view` (mapped by `segment`), which the
  // caller registered for this process: `lock` holds HolderLock slot idx, the entry's owner
  // word is `owner` and its generation `generation`. RecoveryDue() is true at most once per
  // `recovery_interval`.
  MpmcHandle(std::shared_ptr<const Segment> segment, MpmcView view, uint32_t idx, HolderLock lock,
             uint64_t owner, uint64_t generation,
             std::chrono::nanoseconds recovery_interval) noexcept;
  // Leaves `other` owning nothing: valid() false, its destructor frees nothing.
  MpmcHandle(MpmcHandle&& other) noexcept;
  // Not assignable: a holder must give up its claim before its entry is freed, so it
  // reassigns itself by destruction and move construction in place instead.
  MpmcHandle& operator=(MpmcHandle&&) = delete;
  MpmcHandle(const MpmcHandle&) = delete;
  MpmcHandle& operator=(const MpmcHandle&) = delete;
  // Frees the registry entry (owner word cleared, then the lock dropped), unless moved
  // from, revoked (the entry was recovered meanwhile: it is not ours any more) or in another
  // process than the one that registered it (an inherited copy after fork(): the entry
  // stays the registrant's). Release whatever the entry's index claimed in the queue first:
  // the index may be handed out again at once.
  ~MpmcHandle();

  // False once moved from: such a handle must not touch the queue (its view is empty).
  bool valid() const noexcept { return segment_ != nullptr; }
  // True in a process other than the one that registered the handle (a forked child's
  // inherited copy, which does not hold the entry's HolderLock): it must not release the
  // entry nor anything claimed under its index. Takes a mutex: destructors only.
  bool foreign() const noexcept;
  // True if the entry was recovered since this handle registered (this process was judged
  // dead: its token fd was closed behind its back). seq_cst load (mpmc_layout.h, rule 1):
  // call it right after a successful claim CAS.
  bool revoked() const noexcept {
    // SYNC(revoke): seq_cst, ordered after the claim CAS (mpmc_layout.h rule 1).
    return view_.registry[idx_].generation.load(std::memory_order_seq_cst) != generation_;
  }

  // Usable for claims: not moved from, and not known to be revoked. Error() says why not.
  bool usable() const noexcept { return segment_ != nullptr && !revoked_seen_; }
  RingErrc Unusable() const noexcept {
    return segment_ == nullptr ? RingErrc::kBadState : RingErrc::kRevoked;
  }
  // Records that the entry was taken away (every later claim fails with kRevoked).
  void MarkRevoked() noexcept { revoked_seen_ = true; }

  const MpmcView& view() const noexcept { return view_; }
  const Segment& segment() const noexcept { return *segment_; }
  // The registry index; claims write it into the slot stamps.
  uint32_t index() const noexcept { return idx_; }
  // The queue's shm name (empty for an anonymous one), for log lines.
  const std::string& segment_name() const noexcept;

  // True if the recovery interval has passed since the last time it returned true (and
  // then restarts it): time for a slow path to check whether other participants died.
  // Reads the clock once.
  bool RecoveryDue() noexcept;

 private:
  std::shared_ptr<const Segment> segment_;  // null once moved from
  MpmcView view_;
  uint32_t idx_ = 0;
  HolderLock lock_;  // HolderLock slot idx_: the kernel's proof that we hold the entry
  uint64_t owner_word_ = 0;
  uint64_t generation_ = 0;
  bool revoked_seen_ = false;
  std::chrono::nanoseconds recovery_interval_{};
  std::chrono::steady_clock::time_point next_recovery_{};
};

}  // namespace shmlink::internal

#endif  // SHMLINK_RINGBUF_MPMC_HANDLE_H_
