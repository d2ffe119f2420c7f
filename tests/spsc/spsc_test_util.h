// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Helpers for the SPSC ring tests: deterministic message contents (so a reader in another
// process can verify every byte from the sequence number alone), bounded child waits and
// pipe-based start signals.
#ifndef SHMLINK_TESTS_SPSC_SPSC_TEST_UTIL_H_
#define SHMLINK_TESTS_SPSC_SPSC_TEST_UTIL_H_

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <thread>

namespace shmlink::testing {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Message `seq` of a stream seeded by `seed`: its size (>= 16) is derived from seq, mostly
// small, 1 in 1024 up to `max_size` so that wrap-around and padding are exercised.
inline size_t MessageSize(uint64_t seed, uint64_t seq, size_t max_size) {
  const uint64_t r = SplitMix64(seed ^ (seq * 0x2545f4914f6cdd1dull));
  size_t n = (r & 1023) == 0 ? 16 + (r >> 8) % (max_size - 15) : 16 + (r >> 8) % 240;
  return n > max_size ? max_size : n;
}

// Layout: [u64 seq][payload bytes from a PRNG seeded by (seed, seq)][u64 FNV-1a of the rest].
inline void FillMessage(uint64_t seed, uint64_t seq, std::span<std::byte> out) {
  std::byte* p = out.data();
  const size_t n = out.size();
  std::memcpy(p, &seq, 8);
  uint64_t s = seed ^ seq;
  for (size_t i = 8; i < n - 8; i += 8) {
    s = SplitMix64(s);
    std::memcpy(p + i, &s, std::min<size_t>(8, n - 8 - i));
  }
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n - 8; ++i) h = (h ^ static_cast<uint8_t>(p[i])) * 0x100000001b3ull;
  std::memcpy(p + n - 8, &h, 8);
}

// Returns 0 if `msg` is exactly message `seq`, else a non-zero code saying what differs.
inline int CheckMessage(uint64_t seed, uint64_t seq, size_t max_size,
                        std::span<const std::byte> msg) {
  if (msg.size() != MessageSize(seed, seq, max_size)) return 10;
  uint64_t got_seq;
  std::memcpy(&got_seq, msg.data(), 8);
  if (got_seq != seq) return 11;
  const std::byte* p = msg.data();
  const size_t n = msg.size();
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n - 8; ++i) h = (h ^ static_cast<uint8_t>(p[i])) * 0x100000001b3ull;
  uint64_t got_h;
  std::memcpy(&got_h, p + n - 8, 8);
  if (got_h != h) return 12;
  uint64_t s = seed ^ seq;
  for (size_t i = 8; i < n - 8; i += 8) {
    s = SplitMix64(s);
    if (std::memcmp(p + i, &s, std::min<size_t>(8, n - 8 - i)) != 0) return 13;
  }
  return 0;
}

// Waits for `pid` at most `limit`; kills it (SIGKILL) and returns -2 if it overstays.
// Returns its exit code, or 128 + signal. `usage` (optional) receives its rusage.
inline int WaitChildFor(pid_t pid, std::chrono::milliseconds limit, rusage* usage = nullptr) {
  const auto end = std::chrono::steady_clock::now() + limit;
  int status = 0;
  rusage ru{};
  for (;;) {
    pid_t r = ::wait4(pid, &status, WNOHANG, &ru);
    if (r == pid) break;
    if (std::chrono::steady_clock::now() > end) {
      ::kill(pid, SIGKILL);
      ::wait4(pid, &status, 0, &ru);
      return -2;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (usage != nullptr) *usage = ru;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// One-shot signal between processes over a pipe.
struct Signal {
  int fds[2] = {-1, -1};
  Signal() {
    if (::pipe(fds) != 0) fds[0] = fds[1] = -1;
  }
  ~Signal() {
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
  }
  void Notify() const {
    char c = 1;
    (void)!::write(fds[1], &c, 1);
  }
  bool Wait() const {
    char c;
    return ::read(fds[0], &c, 1) == 1;
  }
};

}  // namespace shmlink::testing

#endif  // SHMLINK_TESTS_SPSC_SPSC_TEST_UTIL_H_
