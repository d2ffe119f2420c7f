// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// //bench:bridge_bench - a ring carried by shmlink-bridge vs plain ZeroMQ PUSH/PULL between
// the same loopback endpoints, one sender process -> one receiver process, msgs/s.
//
//   bazel run -c opt //bench:bridge_bench -- [--sizes 64,65536] [--seconds 1]
//
// shmlink-bridge: a producer writes the local ring A, an exporting bridge sends it to an
// importing bridge, a consumer reads ring B (4 processes: two more than plain ZeroMQ). Time
// runs from the first message written to the last one read. Variants: ":hmac" (no
// encryption, like the plain ZeroMQ case) and ":curve" (encrypted). zeromq: a PUSH process
// sends individual messages to a PULL process (no batching, no encryption). Prints JSON
// Lines (bench_record.h). Indicative: two cores shared by everything on the machine.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_record.h"

#include <shmlink/ring_error.h>
#include <shmlink/spsc_ring.h>

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using shmlink::bench::BenchRecord;

int FreePort() {
  static int next = 0;
  return 17000 + (::getpid() % 2000) * 4 + (next++ % 4);
}

// Messages in `seconds` at a guessed rate, at least 1000.
uint64_t Count(size_t size, double seconds) {
  const double rate = size <= 1024 ? 1.5e6 : 2e9 / static_cast<double>(size);
  return std::max<uint64_t>(1000, static_cast<uint64_t>(rate * seconds));
}

double ZeroMq(size_t size, uint64_t n) {
  const std::string ep = "tcp://127.0.0.1:" + std::to_string(FreePort());
  pid_t pid = ::fork();
  if (pid == 0) {  // sender
    void* ctx = zmq_ctx_new();
    void* s = zmq_socket(ctx, ZMQ_PUSH);
    zmq_connect(s, ep.c_str());
    std::vector<char> buf(size, 'x');
    for (uint64_t i = 0; i < n; ++i) zmq_send(s, buf.data(), size, 0);
    int linger = -1;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(s);
    zmq_ctx_term(ctx);
    ::_exit(0);
  }
  void* ctx = zmq_ctx_new();
  void* r = zmq_socket(ctx, ZMQ_PULL);
  zmq_bind(r, ep.c_str());
  std::vector<char> buf(size + 1);
  zmq_recv(r, buf.data(), buf.size(), 0);  // first message starts the clock
  const auto t0 = Clock::now();
  for (uint64_t i = 1; i < n; ++i) zmq_recv(r, buf.data(), buf.size(), 0);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  ::waitpid(pid, nullptr, 0);
  zmq_close(r);
  zmq_ctx_term(ctx);
  return static_cast<double>(n - 1) / secs;
}

pid_t Spawn(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execve(argv[0], argv.data(), environ);
    ::_exit(127);
  }
  return pid;
}

double Bridge(const std::string& bridge, const std::string& auth, size_t size, uint64_t n) {
  using namespace shmlink;
  const std::string tag = std::to_string(::getpid()) + "-" + std::to_string(size) + auth;
  const std::string a = "/shmlink-bench-bridgeA-" + tag, b = "/shmlink-bench-bridgeB-" + tag;
  const std::string ep = "tcp://127.0.0.1:" + std::to_string(FreePort());
  auto ring_a = SpscRing::Create(a, 8 << 20);
  auto ring_b = SpscRing::Create(b, 8 << 20);
  if (!ring_a || !ring_b) return 0;
  ::setenv("SHMLINK_BRIDGE_AUTHKEY", "bench key", 1);
  ::setenv("SHMLINK_LOG", "error", 1);
  pid_t exp = Spawn({bridge, "export", "ring", a, "--bind", ep, "--auth", auth});
  pid_t imp = Spawn({bridge, "import", "ring", b, "--connect", ep, "--auth", auth});
  pid_t prod = ::fork();
  if (prod == 0) {
    auto r = SpscRing::Attach(a);
    auto tx = r->Producer();
    for (uint64_t i = 0; i < n; ++i) {
      auto buf = tx->reserve(size);
      if (!buf) ::_exit(1);
      std::memset(buf->data(), static_cast<int>(i), std::min<size_t>(size, 16));
      if (i % 32 == 31 || size > 4096) tx->commit();
    }
    tx->close();
    ::_exit(0);
  }
  auto rx = ring_b->Consumer();
  double rate = 0;
  if (rx) {
    auto first = rx->peek(WaitOptions::WithTimeout(std::chrono::seconds(30)));
    if (first) {
      rx->release();
      const auto t0 = Clock::now();
      uint64_t got = 1;
      while (got < n) {
        auto m = rx->peek(WaitOptions::WithTimeout(std::chrono::seconds(30)));
        if (!m) break;
        rx->release();
        ++got;
      }
      const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      if (got == n) rate = static_cast<double>(n - 1) / secs;
    }
  }
  for (pid_t p : {prod, exp, imp}) {
    ::kill(p, SIGKILL);
    ::waitpid(p, nullptr, 0);
  }
  (void)ring_a->Unlink();
  (void)ring_b->Unlink();
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"shmlink-bridge vs plain ZeroMQ PUSH/PULL, loopback, msgs/s"};
  std::vector<size_t> sizes = {64, 65536};
  double seconds = 1.0;
  std::string bridge = "bridge/shmlink-bridge";
  app.add_option("--sizes", sizes)->delimiter(',');
  app.add_option("--seconds", seconds, "rough measuring time per case");
  app.add_option("--bridge", bridge, "path of the shmlink-bridge binary");
  CLI11_PARSE(app, argc, argv);
  for (size_t size : sizes) {
    const uint64_t n = Count(size, seconds);
    auto emit = [&](const std::string& system, double rate, const std::string& note) {
      BenchRecord r;
      r.system = system;
      r.pattern = "throughput";
      r.size = size;
      r.producers = 1;
      r.consumers = 1;
      if (rate > 0) {
        r.msgs_per_s = rate;
        r.bytes_per_s = rate * static_cast<double>(size);
      } else {
        r.error = "did not complete";
      }
      r.note = note + "; loopback TCP, " + std::to_string(n) + " messages, indicative";
      std::printf("%s\n", shmlink::bench::ToJsonLine(r).c_str());
      std::fflush(stdout);
    };
    emit("zeromq:push-pull", ZeroMq(size, n), "PUSH -> PULL, one message per ZeroMQ message");
    emit("shmlink-bridge:hmac", Bridge(bridge, "hmac", size, n),
         "ring -> export bridge -> import bridge -> ring, batched, not encrypted");
    emit("shmlink-bridge:curve", Bridge(bridge, "curve", size, n),
         "ring -> export bridge -> import bridge -> ring, batched, CURVE encrypted");
  }
  return 0;
}
