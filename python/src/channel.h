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

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>

#include "ringbuf/spsc_ring.h"

namespace shmlink::py {

// Incremented in the child after every fork() (pthread_atfork).
uint64_t ForkGeneration() noexcept;
void InstallForkHandler();

// Doorbell for fileno()-readiness (Pipe): a word in shared memory plus an eventfd. The
// writer writes the eventfd only on the 0 -> 1 transition of the word; the reader clears
// the word and drains the eventfd when it finds the ring empty.
struct Bell {
  std::atomic<uint32_t>* word = nullptr;
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
  int hup_fd = -1;  // socket whose hang-up means the peer is gone (Pipe), or -1
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
