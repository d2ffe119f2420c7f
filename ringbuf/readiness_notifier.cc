// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <system_error>

#include <shmlink/blocking_wait.h>
#include <shmlink/futex.h>
#include <shmlink/readiness_notifier.h>

namespace shmlink {

Expected<std::unique_ptr<ReadinessNotifier>> ReadinessNotifier::Start(ReadinessSource source) {
  const int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return ErrnoError(errno);
  std::unique_ptr<ReadinessNotifier> n(new ReadinessNotifier(std::move(source), efd));
  // Snapshot before the fd first becomes readable (messages may already be pending): every
  // publication after it signals again, so none falls between the two. The callback's
  // loads are seq_cst (see the header).
  n->start_ = n->source_.snapshot();
  n->Signal();
  try {
    n->thread_ = std::thread([p = n.get()] { p->Run(); });
  } catch (const std::system_error& e) {
    return MakeUnexpected(e.code());  // ~ReadinessNotifier: no thread to join, closes efd
  }
  return n;
}

ReadinessNotifier::~ReadinessNotifier() {
  // seq_cst: the thread's re-check (inside the wait) must see it; the wake below makes a
  // sleeping thread re-check (other sleepers on the word just re-check too: harmless).
  stop_.store(true, std::memory_order_seq_cst);
  if (thread_.joinable()) {
    FutexWake(&source_.event->seq, INT_MAX);
    thread_.join();
  }
  ::close(efd_);
}

void ReadinessNotifier::Signal() noexcept {
  const uint64_t one = 1;
  // EAGAIN (counter saturated) still leaves the fd readable: ignore. The write is a system
  // call: everything this thread loaded before it (the snapshot that changed) happened
  // before the reader's read of the eventfd, and the reader's own seq_cst loads follow.
  (void)!::write(efd_, &one, sizeof(one));
}

void ReadinessNotifier::Run() noexcept {
  // SYNC(event-count): the re-check is source_.snapshot() (seq_cst loads of what the writer
  // stores before its seq_cst fence and NotifyAll); the announce/arm are BlockingWaitWith's.
  ReadinessSnapshot last = start_;
  bool reported_dead = false;
  uint64_t dead_owner = 0;
  // stop_: seq_cst loads, pairing with the destructor's store (see there).
  while (!stop_.load(std::memory_order_seq_cst)) {
    const WaitOptions opts = WaitOptions::Sleep(std::chrono::milliseconds(100));
    ReadinessSnapshot seen;
    auto changed = [&]() -> Expected<bool> {
      if (stop_.load(std::memory_order_seq_cst)) return true;
      seen = source_.snapshot();
      if (seen.progress != last.progress || seen.closed != last.closed) return true;
      if (reported_dead && seen.owner != dead_owner) return true;  // the role changed hands
      return RingErrc::kWouldBlock;
    };
    // After reporting a dead writer, wait without the liveness check (it would report the
    // same death again at once) until the role changes hands.
    auto r = internal::BlockingWaitWith(
        changed, *source_.event, [&] { return !reported_dead && source_.writer_died(); }, opts);
    if (stop_.load(std::memory_order_seq_cst)) break;
    if (r) {
      last = seen;
      if (reported_dead && seen.owner != dead_owner) {
        reported_dead = false;
        // Release: ordered before the Signal() below, as in the death report.
        writer_dead_.store(false, std::memory_order_release);
      }
      Signal();
    } else if (r.error() == make_error_code(RingErrc::kPeerDead)) {
      reported_dead = true;
      dead_owner = source_.snapshot().owner;
      // Release before the eventfd write: a reader woken by it sees the flag (acquire in
      // writer_dead()).
      writer_dead_.store(true, std::memory_order_release);
      Signal();
    }
  }
}

}  // namespace shmlink
