// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// SYNC labels refer to the memory-ordering argument at the top of mpmc_queue.cc.
#include <unistd.h>

#include <utility>

#include <shmlink/mpmc_handle.h>
#include <shmlink/process_identity.h>

namespace shmlink::internal {

MpmcHandle::MpmcHandle(std::shared_ptr<const Segment> segment, MpmcView view, uint32_t idx,
                       uint64_t owner, std::chrono::nanoseconds recovery_interval) noexcept
    : segment_(std::move(segment)),
      view_(view),
      idx_(idx),
      owner_word_(owner),
      registrant_pid_(::getpid()),
      recovery_interval_(recovery_interval) {}

bool MpmcHandle::foreign() const noexcept { return segment_ && ::getpid() != registrant_pid_; }

MpmcHandle::~MpmcHandle() {
  if (!segment_ || foreign()) return;
  MpmcRegistryEntry& e = view_.registry[idx_];
  e.role.store(kRoleNone, std::memory_order_relaxed);  // relaxed: ordered by the release CAS
  ReleaseOwnerWord(e.owner, owner_word_);              // SYNC(owner): release
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
