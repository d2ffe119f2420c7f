// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// shmlink-connection: a transport::Connection between two shmlink processes (Listener on
//   an abstract Unix address, Client in the other process): after the Python-compatible
//   handshake the data path is the connection's pair of SPSC rings in shared memory.
// unix-socket-framed: the same API and the same processes with the shm upgrade disabled,
//   i.e. exactly what a stock Python peer gets: Python's framing (4-byte length + payload)
//   over the Unix socket.
//   throughput: child send_bytes() `size`-byte messages until told to stop, then close();
//     parent peek()s each message in place (touching its bytes) and release()s it.
//   rtt: parent send_bytes(), waits for the echo with peek()/release(); the child echoes.
// Both sides use the connection's default wait (spin 50 us, then futex sleep).
#include <string>
#include <vector>

#include "bench/cases.h"
#include "bench/harness.h"

#include <shmlink/connection.h>

namespace shmlink::bench {
namespace {

using transport::Client;
using transport::Connection;
using transport::Listener;
using transport::ListenerOptions;
using transport::TransportErrc;

constexpr std::string_view kKey = "bench key";

std::string UniqueAbstract() {
  static int counter = 0;
  return "@shmlink-bench-conn-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

struct Setup {
  std::string address;
  ListenerOptions options;
};

Setup MakeSetup(bool shm, uint64_t size) {
  Setup s;
  s.address = UniqueAbstract();
  s.options.connection.enable_shm = shm;
  s.options.connection.ring_capacity = std::max<uint64_t>(RingCapacityFor(size), 1 << 16);
  return s;
}

std::string ThroughputRep(const BenchConfig& cfg, bool shm, uint64_t size, ThroughputFigures* out) {
  Setup s = MakeSetup(shm, size);
  auto listener = Listener::Create(s.address, kKey, s.options);
  if (!listener) return "listen: " + listener.error().message();
  uint64_t count = 0, window_ns = 1;
  std::string err = RunPinnedPair(
      cfg,
      [&](PairSync& sync) -> int {
        auto conn = listener->accept();
        if (!conn || conn->is_shm() != shm) return 2;
        sync.ArriveAndWait();
        ThroughputWindow window(cfg, size >= 4096 ? 1 : 64);
        uint64_t sink = 0;
        for (;;) {
          auto m = conn->peek();
          if (!m || m->size() != size) return 3;
          sink += TouchBytes(m->data(), m->size());
          conn->release();
          if (window.measuring()) ++count;
          if (window.Tick()) break;
        }
        window_ns = window.elapsed_ns();
        sync.RequestStop();
        for (;;) {  // drain until the writer's close
          auto m = conn->peek();
          if (!m) break;
          conn->release();
        }
        sync.child_value.fetch_add(sink & 1, std::memory_order_relaxed);  // keep `sink` live
        return 0;
      },
      [&](PairSync& sync) -> int {
        auto conn = Client(s.address, kKey, s.options.connection);
        if (!conn) return 2;
        const std::vector<std::byte> src = PatternBuffer(size);
        sync.ArriveAndWait();
        while (!sync.StopRequested()) {
          if (!conn->send_bytes(src)) return 3;
        }
        conn->close();
        return 0;
      });
  if (!err.empty()) return err;
  return ThroughputFromCount(count, size, window_ns, out);
}

std::string RttRep(const BenchConfig& cfg, bool shm, uint64_t size,
                   std::vector<uint64_t>* samples) {
  Setup s = MakeSetup(shm, size);
  auto listener = Listener::Create(s.address, kKey, s.options);
  if (!listener) return "listen: " + listener.error().message();
  return RunPinnedPair(
      cfg,
      [&](PairSync& sync) -> int {
        auto conn = listener->accept();
        if (!conn || conn->is_shm() != shm) return 2;
        const std::vector<std::byte> src = PatternBuffer(size);
        samples->reserve(1 << 18);
        sync.ArriveAndWait();
        const uint64_t warm_end = NowNs() + WarmupNs(cfg);
        const uint64_t end = warm_end + MeasureNs(cfg);
        for (;;) {
          const uint64_t t0 = NowNs();
          if (t0 >= end) break;
          if (!conn->send_bytes(src)) return 3;
          auto m = conn->peek();
          if (!m || m->size() != size) return 4;
          conn->release();
          const uint64_t t1 = NowNs();
          if (t0 >= warm_end) samples->push_back(t1 - t0);
        }
        conn->close();
        return 0;
      },
      [&](PairSync& sync) -> int {
        auto conn = Client(s.address, kKey, s.options.connection);
        if (!conn) return 2;
        sync.ArriveAndWait();
        for (;;) {
          auto m = conn->peek();
          if (!m) return m.error() == make_error_code(TransportErrc::kClosed) ? 0 : 3;
          if (!conn->send_bytes(*m)) return 4;
          conn->release();
        }
      });
}

void RunFor(const BenchConfig& cfg, const Emit& emit, bool shm) {
  const std::string system = shm ? "shmlink-connection" : "unix-socket-framed";
  const std::string note = shm ? "transport::Connection, shm rings after the Python handshake"
                               : "transport::Connection, Python framing over AF_UNIX";
  for (uint64_t size : cfg.sizes) {
    BenchRecord rec = ThroughputRecord(system, size);
    RunThroughputReps(
        cfg, [&](ThroughputFigures* out) { return ThroughputRep(cfg, shm, size, out); }, note, rec);
    emit(rec);
  }
  for (uint64_t size : cfg.sizes) {
    BenchRecord rec = RttRecord(system, size);
    RunRttReps(
        cfg, [&](std::vector<uint64_t>* samples) { return RttRep(cfg, shm, size, samples); }, note,
        rec);
    emit(rec);
  }
}

}  // namespace

void RunConnectionCases(const BenchConfig& cfg, const Emit& emit) {
  RunFor(cfg, emit, true);
  RunFor(cfg, emit, false);
}

}  // namespace shmlink::bench
