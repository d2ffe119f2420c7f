// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Helpers for the MPMC tests: self-checking messages, bounded child waits, scratch memory
// shared with forked children.
#ifndef SHMLINK_TESTS_MPMC_MPMC_TEST_UTIL_H_
#define SHMLINK_TESTS_MPMC_MPMC_TEST_UTIL_H_

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <thread>

namespace shmlink::testing {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

// Message: [u32 producer][u32 length][u64 seq][u64 checksum][filler...]; the length varies
// with seq between 24 and 24 + spread bytes.
inline constexpr size_t kMsgHeader = 24;

inline uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

inline size_t MessageLength(uint32_t producer, uint64_t seq, size_t spread) {
  return kMsgHeader + (spread == 0 ? 0 : Mix(seq * 31 + producer) % (spread + 1));
}

inline uint64_t FillerChecksum(std::span<const std::byte> filler) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (std::byte b : filler) {
    h ^= static_cast<uint8_t>(b);
    h *= 0x100000001b3ull;
  }
  return h;
}

// Writes message (producer, seq) into `out` (must hold MessageLength bytes); returns length.
inline size_t EncodeMessage(uint32_t producer, uint64_t seq, size_t spread, std::byte* out) {
  const size_t len = MessageLength(producer, seq, spread);
  const uint32_t len32 = static_cast<uint32_t>(len);
  std::memcpy(out, &producer, 4);
  std::memcpy(out + 4, &len32, 4);
  std::memcpy(out + 8, &seq, 8);
  uint64_t x = Mix(seq ^ (uint64_t{producer} << 40));
  for (size_t i = kMsgHeader; i < len; ++i) {
    out[i] = static_cast<std::byte>(x >> ((i % 8) * 8));
    if (i % 8 == 7) x = Mix(x);
  }
  const uint64_t sum = FillerChecksum({out + kMsgHeader, len - kMsgHeader}) ^ Mix(seq + producer);
  std::memcpy(out + 16, &sum, 8);
  return len;
}

struct Decoded {
  uint32_t producer = 0;
  uint64_t seq = 0;
  bool ok = false;
};

inline Decoded DecodeMessage(std::span<const std::byte> m) {
  Decoded d;
  if (m.size() < kMsgHeader) return d;
  uint32_t len = 0;
  uint64_t sum = 0;
  std::memcpy(&d.producer, m.data(), 4);
  std::memcpy(&len, m.data() + 4, 4);
  std::memcpy(&d.seq, m.data() + 8, 8);
  std::memcpy(&sum, m.data() + 16, 8);
  d.ok =
      len == m.size() && sum == (FillerChecksum(m.subspan(kMsgHeader)) ^ Mix(d.seq + d.producer));
  return d;
}

// Anonymous shared memory inherited by forked children (never appears in /dev/shm).
template <typename T>
T* SharedScratch(size_t count) {
  void* p =
      ::mmap(nullptr, sizeof(T) * count, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  return static_cast<T*>(p);
}
template <typename T>
void FreeScratch(T* p, size_t count) {
  ::munmap(p, sizeof(T) * count);
}

// Waits for `pid` at most `limit`; returns its exit code / 128+signal, or -1 on timeout
// (then the child is killed and reaped).
inline int WaitChildFor(pid_t pid, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (std::chrono::steady_clock::now() > end) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -2;
}

inline bool ShmExists(const std::string& name) {
  return ::access(("/dev/shm" + name).c_str(), F_OK) == 0;
}

}  // namespace shmlink::testing

#endif  // SHMLINK_TESTS_MPMC_MPMC_TEST_UTIL_H_
