// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Self-checking messages for the MPMC stress and fault tests: each carries its producer and
// sequence number and a checksum of its filler, so any consumer can verify it alone.
#ifndef SHMLINK_TESTS_MPMC_MPMC_TEST_UTIL_H_
#define SHMLINK_TESTS_MPMC_MPMC_TEST_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace shmlink::testing {

// Message: [u32 producer][u32 length][u64 seq][u64 checksum][filler...]; the length varies
// with seq between 24 and 24 + spread bytes.
inline constexpr size_t kMsgHeader = 24;
// The shape the tests use: 24..64 bytes.
inline constexpr size_t kMsgSpread = 40;
inline constexpr size_t kMaxMsg = kMsgHeader + kMsgSpread;

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

}  // namespace shmlink::testing

#endif  // SHMLINK_TESTS_MPMC_MPMC_TEST_UTIL_H_
