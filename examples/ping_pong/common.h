// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// What `ping` and `pong` agree on: two SPSC rings named <name>.ping (ping -> pong) and
// <name>.pong (pong -> ping), created by ping. pong retries attaching until they exist, so
// either program may start first. ping unlinks both names once pong has answered the
// first message, so nothing is left in /dev/shm even if a side crashes later.
#ifndef SHMLINK_EXAMPLES_PING_PONG_COMMON_H_
#define SHMLINK_EXAMPLES_PING_PONG_COMMON_H_

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>

#include <shmlink/spsc_ring.h>

namespace ping_pong {

inline std::string PingName(const std::string& base) { return base + ".ping"; }
inline std::string PongName(const std::string& base) { return base + ".pong"; }

// Ring capacity that fits messages of `size` bytes (max message = capacity/2 - 8).
inline uint64_t CapacityFor(uint64_t size) {
  return std::bit_ceil(std::max<uint64_t>(uint64_t{64} << 10, 4 * (size + 8)));
}

inline shmlink::WaitOptions ParseWait(const std::string& s) {
  if (s == "spin") return shmlink::WaitOptions::Spin();
  if (s == "sleep") return shmlink::WaitOptions::Sleep();
  return shmlink::WaitOptions{};  // spin-then-sleep
}

// Attaches to `name`, retrying while it does not exist yet or is still being initialised.
inline shmlink::Expected<shmlink::SpscRing> AttachWithRetry(const std::string& name,
                                                            std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  for (;;) {
    auto r = shmlink::SpscRing::Attach(name);
    if (r) return r;
    const bool transient = r.error() == std::errc::no_such_file_or_directory ||
                           r.error() == shmlink::RingErrc::kNotReady ||
                           r.error() == shmlink::RingErrc::kTruncated;
    if (!transient || std::chrono::steady_clock::now() > end) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace ping_pong

#endif  // SHMLINK_EXAMPLES_PING_PONG_COMMON_H_
