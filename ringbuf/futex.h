// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Thin wrappers over futex(2) for 32-bit words that live in shared memory. They use the
// shared (not FUTEX_PRIVATE_FLAG) operations, so a waiter in one process is woken by a
// waker in another process that maps the same page.
#ifndef SHMLINK_RINGBUF_FUTEX_H_
#define SHMLINK_RINGBUF_FUTEX_H_

#include <atomic>
#include <chrono>
#include <cstdint>

namespace shmlink {

static_assert(sizeof(std::atomic<uint32_t>) == 4 && std::atomic<uint32_t>::is_always_lock_free,
              "futex words must be plain 32-bit words");

// Sleeps while *word == expected, at most `timeout` (negative: no limit). Returns 0 when
// woken (or spuriously), EAGAIN if *word != expected on entry, ETIMEDOUT, or EINTR.
int FutexWait(std::atomic<uint32_t>* word, uint32_t expected,
              std::chrono::nanoseconds timeout) noexcept;

// Wakes up to `count` waiters on `word`. Returns the number woken.
int FutexWake(std::atomic<uint32_t>* word, int count) noexcept;

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_FUTEX_H_
