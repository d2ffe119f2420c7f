// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Python-side state around the C++ SPSC ring handles (internal to the extension).
//
// RxState / TxState own one SpscConsumer / SpscProducer, claimed lazily by the first
// receive / send in a process. Python threads may share a handle: a timed mutex serialises
// them (taken with the GIL released, so a blocked recv never blocks other threads' GIL).
//
// Zero-copy messages (shmlink.Message, see message.cc) stay in the ring after recv: the
// consumer advance()s past them and counts them in `outstanding`; the ring space is
// release()d only when no handed-out message is alive any more (release() frees everything
// advanced past, so it waits for the last one). A consumer that keeps many messages alive
// therefore eventually fills the ring and stalls its producer.
//
// fork(): handles are bound to the claiming process. A child that inherits a state object
// never uses or destroys the parent's handle (that would release the parent's role): the
// fork generation is compared on every use and the inherited handle is leaked.
#ifndef SHMLINK_PYTHON_SRC_CHANNEL_H_
#define SHMLINK_PYTHON_SRC_CHANNEL_H_

#include <Python.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>

#include <shmlink/spsc_ring.h>
#include <shmlink/wait_options.h>

namespace shmlink::py {

// Wait options of every blocking call of the extension (per-call timeout aside): how long
// to spin before sleeping on the futex. Process-wide; set from Python (shmlink.set_spin).
void SetSpin(std::chrono::nanoseconds spin) noexcept;
WaitOptions SliceOptions(std::chrono::nanoseconds timeout) noexcept;

std::chrono::nanoseconds SpinTime() noexcept;

// The spin phase of every blocking call (call it with the GIL released): retries `try_fn`
// until it stops saying kWouldBlock, for at most SpinTime() (and `limit`), yielding the CPU
// between attempts. sched_yield() matters on machines with more runnable processes than
// cores: a busy spin would burn the time slice the peer needs to answer (measured: 64 B
// round trips of ~115 us instead of ~2 us when both ends share a core). Afterwards the
// caller sleeps on the futex (SliceOptions uses WaitStrategy::kSleep).
template <typename TryFn>
auto YieldSpin(TryFn&& try_fn, std::chrono::nanoseconds limit) -> decltype(try_fn()) {
  auto r = try_fn();
  const auto spin = std::min(SpinTime(), limit);
  if (spin.count() <= 0) return r;
  const auto end = std::chrono::steady_clock::now() + spin;
  while (!r && r.error() == make_error_code(RingErrc::kWouldBlock)) {
    if (std::chrono::steady_clock::now() >= end) break;
    sched_yield();
    r = try_fn();
  }
  return r;
}

// Incremented in the child after every fork() (pthread_atfork).
uint64_t ForkGeneration() noexcept;
void InstallForkHandler();

// Doorbell for fileno()-readiness (Pipe): a word in shared memory plus an eventfd. The
// writer writes the eventfd only on the 0 -> 1 transition of the word; the reader clears
// the word and drains the eventfd when it finds the ring empty.
//
// The doorbell is off until the reader first asks for its fileno() (`enabled`, next to the
// word, set once and never cleared): a Pipe nobody selects on makes no eventfd syscall.
struct Bell {
  std::atomic<uint32_t>* word = nullptr;
  std::atomic<uint32_t>* enabled = nullptr;
  int efd = -1;
};

struct RxState {
  std::timed_mutex mu;
  std::atomic<bool> busy{false};  // mu is held (hint for Message deallocation)
  std::function<Expected<SpscConsumer>()> claim;
  std::unique_ptr<SpscConsumer> consumer;  // guarded by mu
  uint64_t generation = 0;
  std::atomic<int> outstanding{0};  // zero-copy messages alive
  bool unreleased = false;          // advanced past, not yet released; guarded by mu
  bool peek_pending = false;        // a try_peek() found a message nobody took; guarded by mu
  bool closed = false;
  bool close_pending = false;  // close() waits for the last zero-copy message; guarded by mu
  Bell bell;
  int hup_fd = -1;                  // socket whose hang-up means the peer is gone (Pipe), or -1
  std::shared_ptr<void> keepalive;  // segment owner kept mapped while messages live

  ~RxState();
  // Frees ring space (and performs a deferred close) if no handed-out message is alive.
  // Caller holds mu.
  void MaybeRelease() noexcept;
};

struct TxState {
  std::timed_mutex mu;
  std::function<Expected<SpscProducer>()> claim;
  std::unique_ptr<SpscProducer> producer;  // guarded by mu
  uint64_t generation = 0;
  bool closed = false;
  Bell bell;
  int hup_fd = -1;  // as RxState::hup_fd: checked while waiting for space
  // Pipe: the ring's consumer-owner word. While no reader ever claimed the ring, every
  // send checks hup_fd, so a sender learns at once that all copies of a peer end that
  // never received were closed (multiprocessing raises BrokenPipeError there).
  const std::atomic<uint64_t>* consumer_owner = nullptr;
  std::shared_ptr<void> keepalive;

  ~TxState();
};

// Raises the Python exception for a ring error (never returns). `sending` selects
// BrokenPipeError (instead of EOFError) for a closed/dead reader.
[[noreturn]] void RaiseRingError(std::error_code ec, bool sending);

// Timeout in seconds: nullopt = forever, <= 0 = do not wait.
using Timeout = std::optional<double>;

// Receive: blocks per `timeout`, returns the next message in place. The caller must then
// call Consume(state, keep) with the GIL held and the lock still owned.
class RxLock {
 public:
  explicit RxLock(RxState& s);  // claims the role if needed; raises on error
  ~RxLock();
  RxLock(const RxLock&) = delete;
  RxLock& operator=(const RxLock&) = delete;
  std::span<const std::byte> Peek(Timeout timeout);
  // keep=true: the message stays in the ring (zero-copy, outstanding += 1).
  void Consume(bool keep);
  // True if a message is ready (for poll()).
  bool Poll(Timeout timeout);
  // Turns the doorbell on (first fileno()) and makes the fd readable if a message (or end
  // of stream) is already waiting.
  void EnableBell();
  // The consumer's eventfd (SpscConsumer::fd(), a named Ring's fileno()); raises on error.
  int ConsumerFd();

 private:
  void AfterConsume();
  RxState& s_;
};

class TxLock {
 public:
  explicit TxLock(TxState& s);
  ~TxLock();
  TxLock(const TxLock&) = delete;
  TxLock& operator=(const TxLock&) = delete;
  std::span<std::byte> Reserve(size_t n, Timeout timeout);
  void Commit();
  SpscProducer& producer() { return *s_.producer; }

 private:
  TxState& s_;
};

// Locks a timed mutex, releasing the GIL and checking for signals while waiting.
void LockWithSignals(std::timed_mutex& mu);

}  // namespace shmlink::py

#endif  // SHMLINK_PYTHON_SRC_CHANNEL_H_
