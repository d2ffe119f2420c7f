// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include <shmlink/futex.h>

namespace shmlink {

int FutexWait(std::atomic<uint32_t>* word, uint32_t expected,
              std::chrono::nanoseconds timeout) noexcept {
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout.count() >= 0) {
    ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
    tsp = &ts;
  }
  // FUTEX_WAIT's timeout is relative (CLOCK_MONOTONIC).
  long rc = ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, tsp,
                      nullptr, 0);
  return rc == 0 ? 0 : errno;
}

int FutexWake(std::atomic<uint32_t>* word, int count) noexcept {
  long rc = ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, count, nullptr,
                      nullptr, 0);
  return rc < 0 ? 0 : static_cast<int>(rc);
}

}  // namespace shmlink
