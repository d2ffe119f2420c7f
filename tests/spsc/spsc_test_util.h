// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Helpers for the SPSC ring tests: deterministic message contents (so that a reader in
// another process can verify every byte from the sequence number alone) and a fresh ring
// with the roles a test holds.
#ifndef SHMLINK_TESTS_SPSC_SPSC_TEST_UTIL_H_
#define SHMLINK_TESTS_SPSC_SPSC_TEST_UTIL_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "tests/test_util.h"

#include <shmlink/spsc_ring.h>

namespace shmlink::testing {

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

// A fresh ring with a unique name (from `tag`) and the roles this process holds in it. The
// tests cannot run without it, so a failure to set it up aborts with the reason.
struct TestRing {
  enum Roles { kProducer = 1, kConsumer = 2, kBoth = kProducer | kConsumer };

  explicit TestRing(uint64_t capacity, const std::string& tag = "ring", Roles roles = kBoth)
      : name(UniqueShmName(tag)) {
    ring.emplace(OrDie(SpscRing::Create(name, capacity), "create"));
    if (roles & kProducer) tx.emplace(OrDie(ring->Producer(), "producer role"));
    if (roles & kConsumer) rx.emplace(OrDie(ring->Consumer(), "consumer role"));
  }

  std::string name;
  std::optional<SpscRing> ring;
  std::optional<SpscProducer> tx;
  std::optional<SpscConsumer> rx;

 private:
  template <typename T>
  T OrDie(Expected<T> r, const char* what) {
    if (!r) {
      std::fprintf(stderr, "TestRing %s: %s: %s\n", name.c_str(), what,
                   r.error().message().c_str());
      std::abort();
    }
    return std::move(*r);
  }
};

}  // namespace shmlink::testing

#endif  // SHMLINK_TESTS_SPSC_SPSC_TEST_UTIL_H_
