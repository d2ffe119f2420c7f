// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// A C++ producer for the bridge tests: writes N checksummed messages (bridge_test_util.h)
// of 16..256 bytes into the ring NAME (waiting until it exists), then closes it.
// Usage: bridge_feed NAME N
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "tests/bridge/bridge_test_util.h"

#include <shmlink/ring_error.h>
#include <shmlink/spsc_ring.h>

int main(int argc, char** argv) {
  using namespace shmlink;
  if (argc != 3) {
    std::fprintf(stderr, "usage: bridge_feed NAME N\n");
    return 2;
  }
  const std::string name = argv[1];
  const uint64_t n = std::strtoull(argv[2], nullptr, 10);
  auto ring = SpscRing::Attach(name);
  for (int i = 0; i < 2000 && !ring; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ring = SpscRing::Attach(name);
  }
  if (!ring) {
    std::fprintf(stderr, "bridge_feed: attach %s: %s\n", name.c_str(),
                 ring.error().message().c_str());
    return 1;
  }
  auto tx = ring->Producer();
  if (!tx) return 1;
  for (uint64_t i = 0; i < n; ++i) {
    const size_t size = testing::MessageSize(i, 16, 256);
    auto buf = tx->reserve(size, WaitOptions::WithTimeout(std::chrono::seconds(20)));
    if (!buf) {
      std::fprintf(stderr, "bridge_feed: reserve: %s\n", buf.error().message().c_str());
      return 1;
    }
    testing::FillMessage(i, buf->data(), size);
    if (i % 64 == 63) tx->commit();
  }
  tx->close();
  return 0;
}
