// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Peer systems (pipe, TCP, iceoryx, Boost) on top of bench/harness.h: a system supplies an
// Endpoint (send / receive one message) per process; this file runs the shared protocol.
//
// Process layout, per repetition: a fresh supervisor process S calls RunPinnedPair, so S
// is side A on cfg.cpu_a and its child is side B on cfg.cpu_b (the same layout as every
// shmlink case). The benchmark process itself never touches the channel, so no per-process
// state of a system (e.g. the iceoryx runtime) is inherited across fork or survives into
// the next repetition; it kills the pair on a deadline, so a hung peer is an error record,
// not a stalled run.
//
//   throughput: B sends fixed-size messages as fast as the channel takes them; A receives
//               and counts for MeasureNs(cfg) after WarmupNs(cfg), then raises the stop
//               flag and drains to B's end tag. msgs/s is measured at the receiver.
//   rtt:        A sends a message, B echoes one of the same size back, A times each round
//               trip (NowNs); p50/p99/p99.9 per repetition (SummarizeRtt).
//
// Each repetition reports one figure; the record holds the median over cfg.reps and the
// min/max spread (PutMedianWithSpread). Warm-up is excluded from every figure.
//
// Every message carries a 64-bit tag in its first 8 bytes (sequence number or a control
// value): the receiver checks it, so a lost, duplicated or reordered message fails the case
// instead of inflating its figure. Messages are at least 8 bytes.
#ifndef SHMLINK_BENCH_PEER_HARNESS_H_
#define SHMLINK_BENCH_PEER_HARNESS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "bench/cases.h"

namespace shmlink::bench {

enum class Side { kA, kB };  // A: receiver / pinger; B: sender / echoer
enum class Pattern { kThroughput, kRtt };

// One process's end of a channel, built in that process after fork. not-thread-safe.
class Endpoint {
 public:
  virtual ~Endpoint() = default;
  // Sends the n bytes at p as one message, waiting while the channel is full.
  // Returns false on failure with *err set.
  virtual bool Send(const std::byte* p, size_t n, std::string* err) = 0;
  // Receives one message of n bytes (waiting while none is there) and stores its first
  // 8 bytes in *tag. Returns false on failure with *err set.
  virtual bool Recv(size_t n, uint64_t* tag, std::string* err) = 0;
};

// Builds `side`'s endpoint for one case, in the child process (already pinned). Returns
// nullptr with *err set if it cannot.
using EndpointFactory = std::function<std::unique_ptr<Endpoint>(Side side, Pattern pattern,
                                                                size_t size, std::string* err)>;

struct PeerCase {
  std::string system;  // schema name, e.g. "pipe"
  Pattern pattern = Pattern::kThroughput;
  size_t size = 64;
  std::string note;  // copied into the record (what the system does per message)
  EndpointFactory make;
  // Called in the benchmark process after the last repetition: close its copies of the
  // descriptors the repetitions' processes inherited. May be empty.
  std::function<void()> after_fork;
  // Called in the parent after both children have exited (e.g. unlink a named queue).
  std::function<void()> cleanup;
  // A child that succeeded leaves through exit() rather than _exit(), so the system's
  // static runtime (iceoryx) deregisters. Safe: stdio is flushed before every fork.
  bool exit_normally = false;
  // Per-repetition deadline in seconds; 0 = 4 x (warm-up + measuring time) + 20 s.
  double timeout_s = 0;
};

// An endpoint over a pair of descriptors (read side, write side; may be equal for a socket):
// full-message write()/read() loops, retrying on EINTR and short transfers. It owns and
// closes both descriptors.
std::unique_ptr<Endpoint> MakeFdEndpoint(int rfd, int wfd);

// Runs one case and returns its record (with `error` set if the case failed or timed out).
BenchRecord RunPeerCase(const BenchConfig& cfg, const PeerCase& c);

// Runs `c` for every size in cfg.sizes and both patterns, emitting each record; `prepare`
// is called before each case to create the channel's shared resources (e.g. a socketpair)
// and fill in make/after_fork. If prepare returns a non-empty string, the case is emitted
// as an error record with that text.
void RunPeerFamily(const BenchConfig& cfg, const std::string& system, const std::string& note,
                   const std::function<std::string(PeerCase*)>& prepare, const Emit& emit);

// Writes a one-line progress message to stderr ("  [system] pattern size ...").
void Progress(const std::string& line);

}  // namespace shmlink::bench

#endif  // SHMLINK_BENCH_PEER_HARNESS_H_
