// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// shmlink-spsc benchmark cases: one SpscRing between two pinned processes.
//
// throughput (parent = consumer, child = producer; cfg.seconds_per_rep after a warm-up):
//   The producer reserves a span in the ring and memcpy's the payload into it from a
//   source buffer (the one copy: "zero-copy" means no copy beyond producing the bytes);
//   it commits every B messages (B = min(32, max(1, 16 KiB / size)): batching where
//   natural). The consumer peeks each message in place, sums all its bytes as 64-bit
//   words (the read), and releases every B messages. Counted: messages (and payload bytes)
//   the consumer finished reading inside the measured window.
//     shmlink-spsc                    both sides WaitStrategy::kSpin
//     shmlink-spsc:spin-then-sleep    both sides kSpinThenSleep (the default options)
//     shmlink-spsc-sleep              both sides kSleep
// rtt (parent = ping over ring A, child = pong over ring B): ping fills `size` bytes in
//   place and commits; pong peeks, copies the message into a reservation on ring B,
//   commits, releases; ping peeks the reply and releases. One sample per round trip.
//     shmlink-spsc (kSpin), shmlink-spsc:spin-then-sleep, shmlink-spsc-sleep (kSleep).
#include <cstring>
#include <string>
#include <vector>

#include "bench/cases.h"
#include "bench/harness.h"

#include <shmlink/spsc_ring.h>

namespace shmlink::bench {
namespace {

std::string UniqueName(const char* tag) {
  static int counter = 0;
  return "/shmlink-bench-" + std::string(tag) + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(counter++);
}

// Next message for a consumer that may hold advanced, unreleased messages.
Expected<std::span<const std::byte>> NextMessage(SpscConsumer& rx, const WaitOptions& opts) {
  auto m = rx.try_peek();
  if (m || m.error() != RingErrc::kWouldBlock) return m;
  rx.release();  // free what we read in place before waiting (the writer may need it)
  return rx.peek(opts);
}

// One repetition of the throughput case. Returns "" or an error.
std::string ThroughputRep(const BenchConfig& cfg, uint64_t size, const WaitOptions& opts,
                          ThroughputFigures* out) {
  const std::string name = UniqueName("tput");
  auto ring = SpscRing::Create(name, RingCapacityFor(size));
  if (!ring) return "create: " + ring.error().message();
  (void)ring->Unlink();  // both processes hold the mapping; nothing left in /dev/shm
  const uint32_t batch = BatchFor(size);
  uint64_t count = 0, bytes = 0, window_ns = 1, sink = 0;
  std::string err = RunPinnedPair(
      cfg,
      [&](PairSync& sync) -> int {
        auto rx = ring->Consumer();
        if (!rx) return 2;
        sync.ArriveAndWait();
        ThroughputWindow window(cfg, size >= 4096 ? 1 : 256);
        uint32_t held = 0;
        for (;;) {
          auto m = NextMessage(*rx, opts);
          if (!m) return 3;
          sink += TouchBytes(m->data(), m->size());
          if (window.measuring()) {
            ++count;
            bytes += m->size();
          }
          if (++held == batch) {
            rx->release();
            held = 0;
          } else if (!rx->advance()) {
            return 4;
          }
          if (window.Tick()) break;
        }
        window_ns = window.elapsed_ns();
        sync.RequestStop();
        for (;;) {  // drain until the producer's end-of-stream
          auto m = NextMessage(*rx, opts);
          if (!m) return m.error() == RingErrc::kClosed ? 0 : 5;
          if (!rx->advance()) return 6;
        }
      },
      [&](PairSync& sync) -> int {
        auto tx = ring->Producer();
        if (!tx) return 2;
        const std::vector<std::byte> src = PatternBuffer(size);
        sync.ArriveAndWait();
        uint32_t pending = 0;
        while (!sync.StopRequested()) {
          auto buf = tx->reserve(size, opts);
          if (!buf) return 3;
          std::memcpy(buf->data(), src.data(), size);
          if (++pending == batch) {
            tx->commit();
            pending = 0;
          }
        }
        tx->close();
        return 0;
      });
  if (!err.empty()) return err;
  if (count == 0) return "no messages in the measured window";
  out->msgs_per_s = static_cast<double>(count) * 1e9 / static_cast<double>(window_ns);
  out->bytes_per_s = static_cast<double>(bytes) * 1e9 / static_cast<double>(window_ns);
  if (sink == 42) out->msgs_per_s += 0;  // keep the sums alive
  return "";
}

std::string RttRep(const BenchConfig& cfg, uint64_t size, const WaitOptions& opts,
                   std::vector<uint64_t>* samples) {
  const std::string name_a = UniqueName("ping"), name_b = UniqueName("pong");
  auto ping = SpscRing::Create(name_a, RingCapacityFor(size));
  if (!ping) return "create: " + ping.error().message();
  auto pong = SpscRing::Create(name_b, RingCapacityFor(size));
  if (!pong) return "create: " + pong.error().message();
  (void)ping->Unlink();
  (void)pong->Unlink();
  return RunPinnedPair(
      cfg,
      [&](PairSync& sync) -> int {
        auto tx = ping->Producer();
        auto rx = pong->Consumer();
        if (!tx || !rx) return 2;
        const std::vector<std::byte> src = PatternBuffer(size);
        samples->reserve(1 << 20);
        sync.ArriveAndWait();
        const int rc = TimeRoundTrips(cfg, samples, [&](uint64_t seq) {
          auto buf = tx->reserve(size, opts);
          if (!buf) return 3;
          std::memcpy(buf->data(), src.data(), size);
          if (size >= 8) std::memcpy(buf->data(), &seq, 8);
          tx->commit();
          auto m = rx->peek(opts);
          if (!m || m->size() != size) return 4;
          uint64_t echoed = seq;
          if (size >= 8) std::memcpy(&echoed, m->data(), 8);
          rx->release();
          return echoed != seq ? 5 : 0;
        });
        if (rc != 0) return rc;
        tx->close();
        return 0;
      },
      [&](PairSync& sync) -> int {
        auto rx = ping->Consumer();
        auto tx = pong->Producer();
        if (!tx || !rx) return 2;
        sync.ArriveAndWait();
        for (;;) {
          auto m = rx->peek(opts);
          if (!m) return m.error() == RingErrc::kClosed ? 0 : 3;
          auto buf = tx->reserve(m->size(), opts);
          if (!buf) return 4;
          std::memcpy(buf->data(), m->data(), m->size());
          tx->commit();
          rx->release();
        }
      });
}

void ThroughputCase(const BenchConfig& cfg, const Emit& emit, const std::string& system,
                    uint64_t size, const WaitOptions& opts) {
  BenchRecord rec = ThroughputRecord(system, size);
  RunThroughputReps(
      cfg, [&](ThroughputFigures* out) { return ThroughputRep(cfg, size, opts, out); },
      "batch " + std::to_string(BatchFor(size)) +
          "; producer memcpy into reserved span, consumer sums payload in place",
      rec);
  emit(rec);
}

void RttCase(const BenchConfig& cfg, const Emit& emit, const std::string& system, uint64_t size,
             const WaitOptions& opts) {
  BenchRecord rec = RttRecord(system, size);
  RunRttReps(
      cfg,
      [&](std::vector<uint64_t>* samples) {
        std::string err = RttRep(cfg, size, opts, samples);
        if (err.empty() && samples->empty()) err = "no round trips in the measured window";
        return err;
      },
      "", rec);
  emit(rec);
}

}  // namespace

void RunSpscCases(const BenchConfig& cfg, const Emit& emit) {
  const WaitOptions spin = WaitOptions::Spin();
  const WaitOptions spin_sleep{};
  const WaitOptions sleep = WaitOptions::Sleep();
  for (uint64_t size : cfg.sizes) ThroughputCase(cfg, emit, "shmlink-spsc", size, spin);
  for (uint64_t size : cfg.sizes) RttCase(cfg, emit, "shmlink-spsc", size, spin);
  for (uint64_t size : cfg.sizes) RttCase(cfg, emit, "shmlink-spsc-sleep", size, sleep);
  for (uint64_t size : cfg.sizes) {
    ThroughputCase(cfg, emit, "shmlink-spsc:spin-then-sleep", size, spin_sleep);
  }
  for (uint64_t size : cfg.sizes) ThroughputCase(cfg, emit, "shmlink-spsc-sleep", size, sleep);
  if (!cfg.quick) {
    for (uint64_t size : cfg.sizes) {
      RttCase(cfg, emit, "shmlink-spsc:spin-then-sleep", size, spin_sleep);
    }
  }
}

}  // namespace shmlink::bench
