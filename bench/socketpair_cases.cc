// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// unix-socketpair: AF_UNIX SOCK_STREAM socketpair between the same two pinned processes as
// shmlink-spsc, blocking I/O (the usual way it is used).
//   throughput: child writes `size`-byte messages (one write() per message, looping on
//     partial writes) until told to stop; parent read()s exactly `size` bytes per message
//     into one buffer. Counted: messages fully read inside the measured window.
//   rtt: parent writes `size` bytes, child reads them and writes them back, parent reads.
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "bench/cases.h"
#include "bench/fd_io.h"
#include "bench/harness.h"

namespace shmlink::bench {
namespace {

struct Fds {
  int fd[2] = {-1, -1};
  ~Fds() {
    for (int f : fd) {
      if (f >= 0) ::close(f);
    }
  }
};

std::string ThroughputRep(const BenchConfig& cfg, uint64_t size, ThroughputFigures* out) {
  Fds s;
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s.fd) != 0) return "socketpair failed";
  uint64_t count = 0, window_ns = 1;
  std::string err = RunPinnedPair(
      cfg,
      [&](PairSync& sync) -> int {
        ::close(s.fd[1]);
        s.fd[1] = -1;
        std::vector<std::byte> buf(size);
        sync.ArriveAndWait();
        ThroughputWindow window(cfg, size >= 4096 ? 1 : 64);
        for (;;) {
          if (ReadAll(s.fd[0], buf.data(), size) != static_cast<ssize_t>(size)) return 3;
          if (window.measuring()) ++count;
          if (window.Tick()) break;
        }
        window_ns = window.elapsed_ns();
        sync.RequestStop();
        while (ReadAll(s.fd[0], buf.data(), size) > 0) {
        }
        return 0;
      },
      [&](PairSync& sync) -> int {
        ::close(s.fd[0]);
        s.fd[0] = -1;
        const std::vector<std::byte> src = PatternBuffer(size);
        sync.ArriveAndWait();
        while (!sync.StopRequested()) {
          if (!WriteAll(s.fd[1], src.data(), size)) return 3;
        }
        ::shutdown(s.fd[1], SHUT_WR);
        return 0;
      });
  if (!err.empty()) return err;
  return ThroughputFromCount(count, size, window_ns, out);
}

std::string RttRep(const BenchConfig& cfg, uint64_t size, std::vector<uint64_t>* samples) {
  Fds s;
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s.fd) != 0) return "socketpair failed";
  return RunPinnedPair(
      cfg,
      [&](PairSync& sync) -> int {
        ::close(s.fd[1]);
        s.fd[1] = -1;
        std::vector<std::byte> src = PatternBuffer(size), buf(size);
        samples->reserve(1 << 18);
        sync.ArriveAndWait();
        const int rc = TimeRoundTrips(cfg, samples, [&](uint64_t) {
          if (!WriteAll(s.fd[0], src.data(), size)) return 3;
          if (ReadAll(s.fd[0], buf.data(), size) != static_cast<ssize_t>(size)) return 4;
          return 0;
        });
        if (rc != 0) return rc;
        ::shutdown(s.fd[0], SHUT_WR);
        return 0;
      },
      [&](PairSync& sync) -> int {
        ::close(s.fd[0]);
        s.fd[0] = -1;
        std::vector<std::byte> buf(size);
        sync.ArriveAndWait();
        for (;;) {
          const ssize_t r = ReadAll(s.fd[1], buf.data(), size);
          if (r == 0) return 0;
          if (r != static_cast<ssize_t>(size)) return 3;
          if (!WriteAll(s.fd[1], buf.data(), size)) return 4;
        }
      });
}

}  // namespace

void RunSocketpairCases(const BenchConfig& cfg, const Emit& emit) {
  for (uint64_t size : cfg.sizes) {
    BenchRecord rec = ThroughputRecord("unix-socketpair", size);
    RunThroughputReps(
        cfg, [&](ThroughputFigures* out) { return ThroughputRep(cfg, size, out); },
        "SOCK_STREAM, one write() per message, reader read()s exactly size bytes", rec);
    emit(rec);
  }
  for (uint64_t size : cfg.sizes) {
    BenchRecord rec = RttRecord("unix-socketpair", size);
    RunRttReps(
        cfg, [&](std::vector<uint64_t>* samples) { return RttRep(cfg, size, samples); }, "", rec);
    emit(rec);
  }
}

}  // namespace shmlink::bench
