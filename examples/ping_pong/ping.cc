// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// ping: creates <name>.ping and <name>.pong, sends --count messages of --size bytes to
// pong and waits for each echo, then prints round-trip statistics.
//
//   pong --name /demo --count 100000 &   ping --name /demo --count 100000
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "examples/ping_pong/common.h"
#include "examples/ping_pong/options.h"

int main(int argc, char** argv) {
  using namespace shmlink;
  CLI::App app{"ping: round trips to `pong` over two shared-memory SPSC rings"};
  ping_pong::SharedOptions flags;
  uint64_t count = 100000;
  uint64_t size = 64;
  ping_pong::AddNameOption(app, flags, "pong");
  app.add_option("--count", count, "round trips")->check(CLI::PositiveNumber);
  app.add_option("--size", size, "message size in bytes (>= 8)")->check(CLI::Range(8, 1 << 28));
  ping_pong::AddWaitOptions(app, flags, "pong");
  CLI11_PARSE(app, argc, argv);

  auto out = SpscRing::Create(ping_pong::PingName(flags.name), ping_pong::CapacityFor(size));
  if (!out) {
    std::fprintf(stderr, "ping: create %s: %s\n", ping_pong::PingName(flags.name).c_str(),
                 out.error().message().c_str());
    return 1;
  }
  auto in = SpscRing::Create(ping_pong::PongName(flags.name), ping_pong::CapacityFor(size));
  if (!in) {
    std::fprintf(stderr, "ping: create %s: %s\n", ping_pong::PongName(flags.name).c_str(),
                 in.error().message().c_str());
    return 1;
  }
  auto tx = out->Producer();
  auto rx = in->Consumer();
  if (!tx || !rx) {
    std::fprintf(stderr, "ping: claiming roles failed\n");
    return 1;
  }
  const WaitOptions opts = ping_pong::ParseWait(flags.wait);
  WaitOptions first = opts;  // the first echo also waits for pong to start
  first.timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::duration<double>(flags.timeout_s));

  std::vector<uint64_t> rtt;
  rtt.reserve(count);
  std::vector<std::byte> payload(size, std::byte{0x5a});
  auto t_start = std::chrono::steady_clock::now();
  for (uint64_t seq = 0; seq < count; ++seq) {
    const auto t0 = std::chrono::steady_clock::now();
    auto buf = tx->reserve(size, opts);
    if (!buf) {
      std::fprintf(stderr, "ping: reserve: %s\n", buf.error().message().c_str());
      return 1;
    }
    std::memcpy(buf->data(), payload.data(), size);
    std::memcpy(buf->data(), &seq, sizeof(seq));
    tx->commit();
    auto reply = rx->peek(seq == 0 ? first : opts);
    if (!reply) {
      std::fprintf(stderr, "ping: waiting for echo %llu: %s\n",
                   static_cast<unsigned long long>(seq), reply.error().message().c_str());
      return 1;
    }
    uint64_t echoed = ~seq;
    if (reply->size() == size) std::memcpy(&echoed, reply->data(), sizeof(echoed));
    rx->release();
    const auto t1 = std::chrono::steady_clock::now();
    if (echoed != seq) {
      std::fprintf(stderr, "ping: echo %llu is wrong\n", static_cast<unsigned long long>(seq));
      return 1;
    }
    if (seq == 0) {
      t_start = t1;
      // pong holds both rings now: drop the names (the mappings stay valid).
      (void)out->Unlink();
      (void)in->Unlink();
    }
    // The first round trip includes waiting for pong to start: not a sample.
    if (seq > 0 || count == 1) {
      rtt.push_back(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
    }
  }
  const double total_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  tx->close();

  std::sort(rtt.begin(), rtt.end());
  auto pct = [&](double p) {
    size_t i = static_cast<size_t>(p * static_cast<double>(rtt.size()));
    return static_cast<double>(rtt[std::min(i, rtt.size() - 1)]);
  };
  double sum = 0;
  for (uint64_t v : rtt) sum += static_cast<double>(v);
  std::printf(
      "ping: %llu round trips of %llu B (%s): min %.0f ns, p50 %.0f ns, p99 %.0f ns, "
      "p99.9 %.0f ns, max %.0f ns, mean %.0f ns; %.0f round trips/s\n",
      static_cast<unsigned long long>(rtt.size()), static_cast<unsigned long long>(size),
      flags.wait.c_str(), static_cast<double>(rtt.front()), pct(0.50), pct(0.99), pct(0.999),
      static_cast<double>(rtt.back()), sum / static_cast<double>(rtt.size()),
      static_cast<double>(rtt.size()) / total_s);
  return 0;
}
