// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// TopicNotifier: turns a topic's futex-based wake-ups into a readable eventfd, for event
// loops (poll/epoll/asyncio) of subscribers. Internal to TopicSubscriber::fd().
//
// A helper thread sleeps on the topic's data_event (like any sleeping subscriber, so the
// publisher pays nothing extra while nobody sleeps) and adds 1 to the eventfd whenever the
// published sequence, the closed flag or the publisher's liveness changed since it last
// looked. The eventfd is therefore readable whenever something may be pending; the owner
// reads (clears) it first, then drains with try_receive().
//
// Thread safety: the fd may be polled and read from any thread. Destruction stops and
// joins the thread (within one wake or ~100 ms) and closes the fd.
#ifndef SHMLINK_RINGBUF_TOPIC_NOTIFIER_H_
#define SHMLINK_RINGBUF_TOPIC_NOTIFIER_H_

#include <atomic>
#include <memory>
#include <thread>

#include <shmlink/expected.h>
#include <shmlink/segment.h>
#include <shmlink/topic_layout.h>

namespace shmlink {

class TopicNotifier {
 public:
  [[nodiscard]] static Expected<std::unique_ptr<TopicNotifier>> Start(
      std::shared_ptr<const Segment> segment, const TopicRegion& region);
  ~TopicNotifier();
  TopicNotifier(const TopicNotifier&) = delete;
  TopicNotifier& operator=(const TopicNotifier&) = delete;

  int fd() const noexcept { return efd_; }

 private:
  TopicNotifier(std::shared_ptr<const Segment> segment, const TopicRegion& region, int efd)
      : segment_(std::move(segment)), region_(region), efd_(efd) {}
  void Run() noexcept;
  void Signal() noexcept;

  std::shared_ptr<const Segment> segment_;
  TopicRegion region_;
  int efd_ = -1;
  uint64_t start_seq_ = 0;
  uint32_t start_closed_ = 0;
  std::atomic<bool> stop_{false};  // process-local: relaxed/seq_cst both fine, see Run()
  std::thread thread_;
};

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_TOPIC_NOTIFIER_H_
