// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// internal::MpmcHandle: the part of an MPMC queue handle that MpmcProducer and
// MpmcConsumer (mpmc_queue.h) share - the mapping the handle keeps alive, the registry
// entry it was given (freed when the handle is destroyed), and the schedule of its
// liveness checks of the other participants. Not an API of its own: use the handles.
//
// Thread safety: one thread at a time, like the handle that holds it.
#ifndef SHMLINK_RINGBUF_MPMC_HANDLE_H_
#define SHMLINK_RINGBUF_MPMC_HANDLE_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <shmlink/mpmc_layout.h>
#include <shmlink/segment.h>

namespace shmlink::internal {

class MpmcHandle {
 public:
  // Takes over registry entry `idx` of the queue `view` (mapped by `segment`), which the
  // caller claimed for this process with owner word `owner` (its packed identity).
  // RecoveryDue() is true at most once per `recovery_interval`.
  MpmcHandle(std::shared_ptr<const Segment> segment, MpmcView view, uint32_t idx, uint64_t owner,
             std::chrono::nanoseconds recovery_interval) noexcept;
  // Leaves `other` owning nothing (its destructor then frees nothing).
  MpmcHandle(MpmcHandle&& other) noexcept = default;
  // Not assignable: a holder must give up its claim before its entry is freed, so it
  // reassigns itself by destruction and move construction in place instead.
  MpmcHandle& operator=(MpmcHandle&&) = delete;
  MpmcHandle(const MpmcHandle&) = delete;
  MpmcHandle& operator=(const MpmcHandle&) = delete;
  // Frees the registry entry, unless moved from or in another process than the one that
  // registered it (an inherited copy after fork(): the entry stays the registrant's).
  // Release whatever the entry's index claimed in the queue first: the index may be
  // handed out again at once.
  ~MpmcHandle();

  // True in a process other than the one that registered the handle (a forked child's
  // inherited copy): it must not release the entry nor anything claimed under its index.
  bool foreign() const noexcept;

  const MpmcView& view() const noexcept { return view_; }
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
  uint64_t owner_word_ = 0;
  pid_t registrant_pid_ = 0;  // getpid() of the registrant
  std::chrono::nanoseconds recovery_interval_{};
  std::chrono::steady_clock::time_point next_recovery_{};
};

}  // namespace shmlink::internal

#endif  // SHMLINK_RINGBUF_MPMC_HANDLE_H_
