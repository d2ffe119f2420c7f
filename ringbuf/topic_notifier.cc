// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <system_error>

#include <shmlink/blocking_wait.h>
#include <shmlink/futex.h>
#include <shmlink/topic_liveness.h>
#include <shmlink/topic_notifier.h>

namespace shmlink {

Expected<std::unique_ptr<TopicNotifier>> TopicNotifier::Start(
    std::shared_ptr<const Segment> segment, const TopicRegion& region) {
  const int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return ErrnoError(errno);
  std::unique_ptr<TopicNotifier> n(new TopicNotifier(std::move(segment), region, efd));
  // Snapshot before the fd first becomes readable (messages, e.g. history, may already be
  // pending): every publication after it signals again, so none falls between the two.
  n->start_seq_ = region.control->tail_seq.load(std::memory_order_seq_cst);
  n->start_closed_ = region.control->closed.load(std::memory_order_seq_cst);
  n->Signal();
  try {
    n->thread_ = std::thread([p = n.get()] { p->Run(); });
  } catch (const std::system_error& e) {
    return MakeUnexpected(e.code());
  }
  return n;
}

TopicNotifier::~TopicNotifier() {
  // seq_cst: the thread's re-check (inside the wait) must see it; the wake below makes a
  // sleeping thread re-check (other sleepers on the word just re-check too: harmless).
  stop_.store(true, std::memory_order_seq_cst);
  FutexWake(&region_.control->data_event.seq, INT_MAX);
  if (thread_.joinable()) thread_.join();
  ::close(efd_);
}

void TopicNotifier::Signal() noexcept {
  const uint64_t one = 1;
  // EAGAIN (counter saturated) still leaves the fd readable: ignore.
  (void)!::write(efd_, &one, sizeof(one));
}

void TopicNotifier::Run() noexcept {
  TopicControl* ctl = region_.control;
  // SYNC(event-count): seq_cst loads in the re-check (the publisher stores tail_seq, then
  // a seq_cst fence, then notifies).
  uint64_t last_seq = start_seq_;
  uint32_t last_closed = start_closed_;
  uint64_t dead_owner = 0;
  while (!stop_.load(std::memory_order_seq_cst)) {
    WaitOptions opts = WaitOptions::Sleep(std::chrono::milliseconds(100));
    uint64_t seen_seq = 0;
    uint32_t seen_closed = 0;
    auto changed = [&]() -> Expected<bool> {
      if (stop_.load(std::memory_order_seq_cst)) return true;
      seen_seq = ctl->tail_seq.load(std::memory_order_seq_cst);
      seen_closed = ctl->closed.load(std::memory_order_seq_cst);
      if (seen_seq != last_seq || seen_closed != last_closed) return true;
      // Relaxed: a hint re-checked against /proc by the wait.
      const uint64_t owner = ctl->publisher_owner.load(std::memory_order_relaxed);
      if (dead_owner != 0 && owner != dead_owner) return true;  // a successor took over
      return RingErrc::kWouldBlock;
    };
    // After reporting a dead publisher, wait without the liveness check (it would report
    // the same death again at once) until the role changes hands.
    auto r = internal::BlockingWaitWith(
        changed, ctl->data_event,
        [&] { return dead_owner == 0 && TopicPublisherDied(*segment_, *ctl); }, opts);
    if (stop_.load(std::memory_order_seq_cst)) break;
    if (r) {
      last_seq = seen_seq;
      last_closed = seen_closed;
      if (ctl->publisher_owner.load(std::memory_order_relaxed) != dead_owner) dead_owner = 0;
      Signal();
    } else if (r.error() == make_error_code(RingErrc::kPeerDead)) {
      dead_owner = ctl->publisher_owner.load(std::memory_order_relaxed);
      Signal();
    }
  }
}

}  // namespace shmlink
