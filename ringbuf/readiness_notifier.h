// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// ReadinessNotifier: turns the futex wake-ups of a reader's EventCount into a readable
// eventfd, for event loops (poll/epoll/asyncio). Internal to the readers' fd() calls
// (TopicSubscriber::fd(), SpscConsumer::fd()).
//
// A helper thread sleeps on the reader's EventCount (the word writers notify after each
// publication) like any sleeping reader, so a writer pays nothing extra while nobody
// sleeps, and it makes no new kind of call: the wake it already makes reaches the thread.
// The thread adds 1 to the eventfd whenever the watched state - a ReadinessSnapshot the
// owner's callback takes: the writer's progress, its closed flag - changed since it last
// looked, and when it finds the writer dead (then it reports that death once, and waits
// without asking again until another process holds the writer's role). The eventfd is
// therefore readable whenever something may be pending; the owner's contract is: read
// (clear) it first, then drain with the non-blocking receive until it would block.
//
// Callbacks (called on the helper thread only):
//  - snapshot(): the watched state. `progress` and `closed` must be read with seq_cst
//    loads (the re-check of the EventCount protocol, event_count.h), and the writer must
//    change them before its seq_cst fence/store and NotifyAll. `owner` (the writer's
//    packed identity, 0: none) may be read relaxed: it is only compared with the one that
//    was found dead.
//  - writer_died(): true only on evidence that the writer died (slow path: a /proc read or
//    an fcntl; called at most once per liveness interval).
// Both may capture pointers into a mapping: the owner keeps it mapped until the notifier is
// destroyed.
//
// Thread safety: fd() and writer_dead() may be called from any thread; the fd may be polled
// and read from any thread. Destruction stops and joins the thread (within one wake or
// ~100 ms) and closes the fd. Not for use across fork() (the child has no helper thread).
#ifndef SHMLINK_RINGBUF_READINESS_NOTIFIER_H_
#define SHMLINK_RINGBUF_READINESS_NOTIFIER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>

#include <shmlink/event_count.h>
#include <shmlink/expected.h>

namespace shmlink {

// What a ReadinessNotifier compares between wake-ups.
struct ReadinessSnapshot {
  uint64_t progress = 0;  // changes with every publication (a position or a sequence)
  uint64_t closed = 0;    // the writer's end-of-stream flag
  uint64_t owner = 0;     // packed identity of the writer's role holder (0: none)
};

struct ReadinessSource {
  EventCount* event = nullptr;  // what the writer notifies; in a mapping the owner keeps
  std::function<ReadinessSnapshot()> snapshot;
  std::function<bool()> writer_died;
};

class ReadinessNotifier {
 public:
  // Creates the eventfd (readable at once: something may already be pending) and starts
  // the thread. Errors: errno of eventfd(2) or of the thread's creation.
  [[nodiscard]] static Expected<std::unique_ptr<ReadinessNotifier>> Start(ReadinessSource source);
  ~ReadinessNotifier();
  ReadinessNotifier(const ReadinessNotifier&) = delete;
  ReadinessNotifier& operator=(const ReadinessNotifier&) = delete;

  int fd() const noexcept { return efd_; }

  // True from the moment the thread found the writer dead (before it made the fd readable
  // for that) until another process took the writer's role or the writer left it.
  bool writer_dead() const noexcept {
    // Acquire, pairs with the release store in Run() before the eventfd write: a reader
    // woken by the fd sees the flag. A stale value only delays or repeats the report.
    return writer_dead_.load(std::memory_order_acquire);
  }

 private:
  ReadinessNotifier(ReadinessSource source, int efd) : source_(std::move(source)), efd_(efd) {}
  void Run() noexcept;
  void Signal() noexcept;

  ReadinessSource source_;
  int efd_ = -1;
  ReadinessSnapshot start_{};
  std::atomic<bool> stop_{false};  // process-local; seq_cst, see the destructor
  std::atomic<bool> writer_dead_{false};
  std::thread thread_;
};

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_READINESS_NOTIFIER_H_
