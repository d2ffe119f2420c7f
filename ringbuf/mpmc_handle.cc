// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// SYNC labels refer to the memory-ordering argument at the top of mpmc_queue.cc.
#include <utility>

#include <shmlink/mpmc_handle.h>

namespace shmlink::internal {

MpmcHandle::MpmcHandle(std::shared_ptr<const Segment> segment, MpmcView view, uint32_t idx,
                       HolderLock lock, uint64_t owner, uint64_t generation,
                       std::chrono::nanoseconds recovery_interval) noexcept
    : segment_(std::move(segment)),
      view_(view),
      idx_(idx),
      lock_(std::move(lock)),
      owner_word_(owner),
      generation_(generation),
      recovery_interval_(recovery_interval) {}

MpmcHandle::MpmcHandle(MpmcHandle&& o) noexcept
    : segment_(std::move(o.segment_)),
      view_(std::exchange(o.view_, MpmcView{})),
      idx_(o.idx_),
      lock_(std::move(o.lock_)),
      owner_word_(std::exchange(o.owner_word_, 0)),
      generation_(o.generation_),
      revoked_seen_(o.revoked_seen_),
      recovery_interval_(o.recovery_interval_),
      next_recovery_(o.next_recovery_) {}

bool MpmcHandle::foreign() const noexcept { return segment_ && !lock_.held_here(); }

MpmcHandle::~MpmcHandle() {
  if (!segment_ || foreign()) return;  // lock_ then only forgets an inherited token
  MpmcRegistryEntry& e = view_.registry[idx_];
  // Revoked (recovered while we ran): the entry is not ours; a later holder may have it.
  // The residual race (a recovery and a re-registration by this same process between this
  // check and the CAS below) needs a token closed behind our back; see docs/mpmc.md.
  if (!revoked_seen_ && !revoked()) {
    e.role.store(kRoleNone, std::memory_order_relaxed);  // relaxed: ordered by the CAS below
    uint64_t expected = owner_word_;
    // SYNC(owner): seq_cst; leaving, not dying: the name goes before the lock does.
    e.owner.compare_exchange_strong(expected, 0, std::memory_order_seq_cst);
  }
  lock_.Release();
}

const std::string& MpmcHandle::segment_name() const noexcept {
  static const std::string kNone;
  return segment_ ? segment_->name() : kNone;
}

bool MpmcHandle::RecoveryDue() noexcept {
  const std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now();
  if (now < next_recovery_) return false;
  next_recovery_ = now + recovery_interval_;
  return true;
}

}  // namespace shmlink::internal
