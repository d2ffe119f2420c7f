// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// A separately exec'd reader for spsc_cross_process_test: attaches to a ring *by name*
// (no inherited state from fork), verifies `count` messages of the test stream, expects
// end-of-stream, and exits 0. Any other exit code names the first problem.
//
//   spsc_peer NAME COUNT SEED
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "tests/spsc/spsc_test_util.h"

#include <shmlink/spsc_ring.h>

int main(int argc, char** argv) {
  using namespace shmlink;
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s NAME COUNT SEED\n", argv[0]);
    return 2;
  }
  const std::string name = argv[1];
  const uint64_t count = std::strtoull(argv[2], nullptr, 10);
  const uint64_t seed = std::strtoull(argv[3], nullptr, 10);
  // The creator may still be initialising: retry briefly on kNotReady / absent.
  Expected<SpscRing> ring = RingErrc::kNotReady;
  for (int i = 0; i < 500; ++i) {
    ring = SpscRing::Attach(name);
    if (ring) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!ring) {
    std::fprintf(stderr, "spsc_peer: attach %s: %s\n", name.c_str(),
                 ring.error().message().c_str());
    return 3;
  }
  auto rx = ring->Consumer();
  if (!rx) {
    std::fprintf(stderr, "spsc_peer: consumer: %s\n", rx.error().message().c_str());
    return 4;
  }
  const size_t max = rx->max_message_size();
  for (uint64_t seq = 0; seq < count; ++seq) {
    auto m = rx->peek();
    if (!m) {
      std::fprintf(stderr, "spsc_peer: message %llu: %s\n", static_cast<unsigned long long>(seq),
                   m.error().message().c_str());
      return 5;
    }
    if (int rc = testing::CheckMessage(seed, seq, max, *m); rc != 0) {
      std::fprintf(stderr, "spsc_peer: message %llu differs (%d)\n",
                   static_cast<unsigned long long>(seq), rc);
      return rc;
    }
    rx->release();
  }
  auto end = rx->peek();
  if (end || end.error() != RingErrc::kClosed) {
    std::fprintf(stderr, "spsc_peer: expected end-of-stream\n");
    return 6;
  }
  return 0;
}
