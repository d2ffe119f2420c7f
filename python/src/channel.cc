// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "python/src/channel.h"

#include <poll.h>
#include <pthread.h>
#include <pybind11/pybind11.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include <shmlink/ring_error.h>

namespace shmlink::py {
namespace {

// Relaxed: only the forking thread's child writes it, before any other thread exists there.
std::atomic<uint64_t> g_fork_generation{0};

void AfterForkChild() { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }

// A blocked call wakes this often to run Python signal handlers (Ctrl-C bound: 100 ms).
constexpr std::chrono::milliseconds kSignalSlice{50};

using Clock = std::chrono::steady_clock;

bool Is(const std::error_code& ec, RingErrc e) { return ec == make_error_code(e); }

// The Python error indicator is set: hand it to pybind11, which re-raises it.
[[noreturn]] void ThrowPython() { throw pybind11::error_already_set(); }

// Relaxed: a tuning knob; a call that reads a stale value just spins for the old time.
std::atomic<int64_t> g_spin_ns{std::chrono::nanoseconds(WaitOptions{}.spin).count()};

}  // namespace

void SetSpin(std::chrono::nanoseconds spin) noexcept {
  g_spin_ns.store(spin.count(), std::memory_order_relaxed);
}

std::chrono::nanoseconds SpinTime() noexcept {
  return std::chrono::nanoseconds(g_spin_ns.load(std::memory_order_relaxed));
}

WaitOptions SliceOptions(std::chrono::nanoseconds timeout) noexcept {
  // The spin already happened in YieldSpin: sleep at once.
  return WaitOptions::Sleep(timeout);
}

uint64_t ForkGeneration() noexcept { return g_fork_generation.load(std::memory_order_relaxed); }

void InstallForkHandler() {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(nullptr, nullptr, &AfterForkChild); });
}

RxState::~RxState() {
  // An inherited handle belongs to the parent: leak it rather than release its role.
  if (generation != ForkGeneration()) (void)consumer.release();
}

TxState::~TxState() {
  if (generation != ForkGeneration()) (void)producer.release();
}

void RxState::MaybeRelease() noexcept {
  // SYNC(outstanding): acquire pairs with the release decrement in message.cc, so every
  // read of a handed-out message happens before its bytes are freed.
  if (!consumer || peek_pending || outstanding.load(std::memory_order_acquire) != 0) return;
  if (unreleased) {
    consumer->release();
    unreleased = false;
  }
  if (close_pending) {
    consumer->close();
    close_pending = false;
  }
}

[[noreturn]] void RaiseRingError(std::error_code ec, bool sending) {
  std::string msg = ec.message();
  if (ec.category() == std::system_category()) {
    PyObject* args = Py_BuildValue("(is)", ec.value(), msg.c_str());
    PyErr_SetObject(PyExc_OSError, args);  // becomes FileExistsError etc. by errno
    Py_XDECREF(args);
    ThrowPython();
  }
  PyObject* type = PyExc_RuntimeError;
  if (ec.category() == RingCategory()) {
    switch (static_cast<RingErrc>(ec.value())) {
      case RingErrc::kClosed:
        type = sending ? PyExc_BrokenPipeError : PyExc_EOFError;
        msg = sending ? "the reader closed its end" : "the writer closed its end (end of stream)";
        break;
      case RingErrc::kPeerDead:
        type = sending ? PyExc_BrokenPipeError : PyExc_EOFError;
        msg = "the peer process died";
        break;
      case RingErrc::kTimedOut:
      case RingErrc::kWouldBlock:
        type = PyExc_TimeoutError;
        msg = "timed out";
        break;
      case RingErrc::kTypeMismatch:
        type = PyExc_TypeError;
        break;
      case RingErrc::kTooLarge:
      case RingErrc::kInvalidArgument:
      case RingErrc::kInvalidName:
      case RingErrc::kWrongKind:
      case RingErrc::kBadMagic:
      case RingErrc::kBadVersion:
      case RingErrc::kBadGeometry:
      case RingErrc::kBadChecksum:
      case RingErrc::kTruncated:
        type = PyExc_ValueError;
        break;
      default:
        type = PyExc_RuntimeError;
    }
  }
  PyErr_SetString(type, msg.c_str());
  ThrowPython();
}

void LockWithSignals(std::timed_mutex& mu) {
  if (mu.try_lock()) return;
  for (;;) {
    bool got;
    Py_BEGIN_ALLOW_THREADS;
    got = mu.try_lock_for(kSignalSlice);
    Py_END_ALLOW_THREADS;
    if (got) return;
    if (PyErr_CheckSignals() != 0) ThrowPython();
  }
}

namespace {

// Calls `wait(opts)` (a blocking ring call) in slices of kSignalSlice with the GIL
// released, running signal handlers between slices. `between` runs with the GIL held after
// each slice and may return an error to stop waiting.
template <typename TryFn, typename WaitFn, typename BetweenFn>
auto SlicedWait(Timeout timeout, TryFn&& try_fn, WaitFn&& wait, BetweenFn&& between)
    -> decltype(wait(WaitOptions{})) {
  const bool infinite = !timeout.has_value();
  const Clock::time_point deadline =
      infinite ? Clock::time_point::max()
               : Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(*timeout));
  using R = decltype(wait(WaitOptions{}));
  if (auto stop = between(); !stop) return R(MakeUnexpected(stop.error()));
  {
    const auto limit =
        infinite ? std::chrono::nanoseconds::max()
                 : std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - Clock::now());
    R r = RingErrc::kWouldBlock;
    Py_BEGIN_ALLOW_THREADS;
    r = YieldSpin(try_fn, limit);
    Py_END_ALLOW_THREADS;
    if (r || !Is(r.error(), RingErrc::kWouldBlock)) return r;
  }
  for (;;) {
    auto slice = std::chrono::duration_cast<std::chrono::nanoseconds>(kSignalSlice);
    if (!infinite) {
      auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero())
        return decltype(wait(WaitOptions{}))(RingErrc::kTimedOut);
      slice = std::min(slice, std::chrono::duration_cast<std::chrono::nanoseconds>(left));
    }
    WaitOptions opts = SliceOptions(slice);
    decltype(wait(opts)) r = RingErrc::kTimedOut;
    Py_BEGIN_ALLOW_THREADS;
    r = wait(opts);
    Py_END_ALLOW_THREADS;
    if (r || !Is(r.error(), RingErrc::kTimedOut)) return r;
    if (PyErr_CheckSignals() != 0) ThrowPython();
    if (auto stop = between(); !stop) return decltype(wait(opts))(MakeUnexpected(stop.error()));
  }
}

bool PeerHungUp(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, POLLRDHUP, 0};
  // The hang-up socket carries only the fds of large Pipe messages (POLLIN): the peer end
  // is closed when the kernel reports a read hang-up.
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0;
}

}  // namespace

RxLock::RxLock(RxState& s) : s_(s) {
  LockWithSignals(s.mu);
  // SYNC(busy): relaxed hint only; the mutex itself orders the protected state.
  s.busy.store(true, std::memory_order_relaxed);
  if (s.closed) {
    s.busy.store(false, std::memory_order_relaxed);
    s.mu.unlock();
    PyErr_SetString(PyExc_OSError, "handle is closed");
    ThrowPython();
  }
  if (!s.consumer || s.generation != ForkGeneration()) {
    if (s.consumer) (void)s.consumer.release();  // inherited across fork: not ours
    auto c = s.claim();
    if (!c) {
      s.busy.store(false, std::memory_order_relaxed);
      s.mu.unlock();
      RaiseRingError(c.error(), false);
    }
    s.consumer = std::make_unique<SpscConsumer>(std::move(*c));
    s.generation = ForkGeneration();
    s.unreleased = false;
    s.peek_pending = false;
  }
}

RxLock::~RxLock() {
  s_.busy.store(false, std::memory_order_relaxed);
  s_.mu.unlock();
}

std::span<const std::byte> RxLock::Peek(Timeout timeout) {
  SpscConsumer& c = *s_.consumer;
  s_.MaybeRelease();
  auto r = c.try_peek();
  if (!r && Is(r.error(), RingErrc::kWouldBlock)) {
    if (timeout && *timeout <= 0) RaiseRingError(make_error_code(RingErrc::kTimedOut), false);
    r = SlicedWait(
        timeout, [&] { return c.try_peek(); }, [&](const WaitOptions& o) { return c.peek(o); },
        [&]() -> Expected<void> {
          s_.MaybeRelease();
          if (PeerHungUp(s_.hup_fd)) {
            auto last = c.try_peek();
            if (!last && Is(last.error(), RingErrc::kWouldBlock)) return RingErrc::kPeerDead;
          }
          return {};
        });
    // The hang-up check may have peeked a final message: take it.
    if (!r && Is(r.error(), RingErrc::kPeerDead)) {
      auto last = c.try_peek();
      if (last) r = last;
    }
  }
  if (!r) RaiseRingError(r.error(), false);
  s_.peek_pending = true;
  return *r;
}

bool RxLock::Poll(Timeout timeout) {
  if (s_.peek_pending) return true;
  SpscConsumer& c = *s_.consumer;
  s_.MaybeRelease();
  auto r = c.try_peek();
  if (!r && Is(r.error(), RingErrc::kWouldBlock) && !(timeout && *timeout <= 0)) {
    r = SlicedWait(
        timeout, [&] { return c.try_peek(); }, [&](const WaitOptions& o) { return c.peek(o); },
        [&]() -> Expected<void> {
          s_.MaybeRelease();
          if (PeerHungUp(s_.hup_fd)) return RingErrc::kPeerDead;
          return {};
        });
  }
  if (r) {
    s_.peek_pending = true;
    return true;
  }
  // End of stream or a dead peer: a recv would not block (it raises EOFError).
  return !(Is(r.error(), RingErrc::kWouldBlock) || Is(r.error(), RingErrc::kTimedOut));
}

void RxLock::Consume(bool keep) {
  SpscConsumer& c = *s_.consumer;
  s_.peek_pending = false;
  if (keep) {
    // SYNC(outstanding): relaxed; the count is read under mu or with acquire (MaybeRelease).
    s_.outstanding.fetch_add(1, std::memory_order_relaxed);
    (void)c.advance();
    s_.unreleased = true;
  } else if (s_.outstanding.load(std::memory_order_acquire) == 0) {
    c.release();
    s_.unreleased = false;
  } else {
    (void)c.advance();
    s_.unreleased = true;
  }
  AfterConsume();
}

void RxLock::EnableBell() {
  Bell& b = s_.bell;
  if (b.word == nullptr || b.enabled->load(std::memory_order_seq_cst) != 0) return;
  // SYNC(bell-enable): seq_cst store then try_peek (seq_cst loads); pairs with the
  // writer's commit + fence + load of `enabled` in TxLock::Commit: either the writer sees
  // the doorbell on, or we see its message here and ring for it ourselves.
  b.enabled->store(1, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  auto r = s_.consumer->try_peek();
  if (r) s_.peek_pending = true;
  if (r || !Is(r.error(), RingErrc::kWouldBlock)) {
    if (b.word->exchange(1, std::memory_order_seq_cst) == 0) (void)::eventfd_write(b.efd, 1);
  }
}

int RxLock::ConsumerFd() {
  auto fd = s_.consumer->fd();
  if (!fd) RaiseRingError(fd.error(), false);
  return *fd;
}

void RxLock::AfterConsume() {
  Bell& b = s_.bell;
  if (b.word == nullptr) return;
  // SYNC(bell): seq_cst, Dekker with the writer's commit (ends with a seq_cst fence) and
  // its exchange in TxLock::Commit: either we see its message below, or it sees 0 and
  // writes the eventfd after our drain.
  if (b.word->load(std::memory_order_seq_cst) == 0) return;
  SpscConsumer& c = *s_.consumer;
  auto r = c.try_peek();
  if (r) {
    s_.peek_pending = true;
    return;
  }
  if (!Is(r.error(), RingErrc::kWouldBlock)) return;  // EOF: stay readable
  b.word->store(0, std::memory_order_seq_cst);
  eventfd_t drained;
  (void)::eventfd_read(b.efd, &drained);  // non-blocking fd: EAGAIN if already empty
  std::atomic_thread_fence(std::memory_order_seq_cst);
  auto again = c.try_peek();
  if (again || !Is(again.error(), RingErrc::kWouldBlock)) {
    if (again) s_.peek_pending = true;
    // A message (or EOF) raced with the drain: make the fd readable again ourselves.
    b.word->store(1, std::memory_order_seq_cst);
    (void)::eventfd_write(b.efd, 1);
  }
}

TxLock::TxLock(TxState& s) : s_(s) {
  LockWithSignals(s.mu);
  if (s.closed) {
    s.mu.unlock();
    PyErr_SetString(PyExc_OSError, "handle is closed");
    ThrowPython();
  }
  if (!s.producer || s.generation != ForkGeneration()) {
    if (s.producer) (void)s.producer.release();
    auto p = s.claim();
    if (!p) {
      s.mu.unlock();
      RaiseRingError(p.error(), true);
    }
    s.producer = std::make_unique<SpscProducer>(std::move(*p));
    s.generation = ForkGeneration();
  }
}

TxLock::~TxLock() {
  if (s_.producer && s_.producer->pending() != 0) s_.producer->cancel();
  s_.mu.unlock();
}

std::span<std::byte> TxLock::Reserve(size_t n, Timeout timeout) {
  SpscProducer& p = *s_.producer;
  if (n > p.max_message_size()) {
    PyErr_Format(PyExc_ValueError, "message of %zu bytes exceeds the ring's maximum of %llu", n,
                 static_cast<unsigned long long>(p.max_message_size()));
    ThrowPython();
  }
  // The ring reports a closed reader only when it is full; multiprocessing users expect
  // BrokenPipeError at once (one shared load).
  if (p.reader_closed()) RaiseRingError(make_error_code(RingErrc::kClosed), true);
  // Relaxed: a hint only. A stale 0 costs one poll(); once a reader has claimed the ring,
  // its close() sets reader_closed and its death is found by the ring's liveness checks.
  if (s_.consumer_owner != nullptr && s_.consumer_owner->load(std::memory_order_relaxed) == 0 &&
      PeerHungUp(s_.hup_fd)) {
    RaiseRingError(make_error_code(RingErrc::kClosed), true);
  }
  auto r = p.try_reserve(n);
  if (!r && Is(r.error(), RingErrc::kWouldBlock)) {
    if (timeout && *timeout <= 0) RaiseRingError(make_error_code(RingErrc::kTimedOut), true);
    r = SlicedWait(
        timeout, [&] { return p.try_reserve(n); },
        [&](const WaitOptions& o) { return p.reserve(n, o); },
        [&]() -> Expected<void> {
          if (PeerHungUp(s_.hup_fd)) return RingErrc::kPeerDead;
          return {};
        });
  }
  if (!r) RaiseRingError(r.error(), true);
  return *r;
}

void TxLock::Commit() {
  s_.producer->commit();
  Bell& b = s_.bell;
  if (b.word == nullptr) return;
  // SYNC(bell): fence + seq_cst load/exchange; pairs with RxLock::AfterConsume and
  // RxLock::EnableBell.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (b.enabled->load(std::memory_order_seq_cst) == 0) return;
  if (b.word->exchange(1, std::memory_order_seq_cst) == 0) (void)::eventfd_write(b.efd, 1);
}

}  // namespace shmlink::py
