// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// pong: attaches to <name>.ping and <name>.pong (retrying until ping has created them),
// echoes every message back until ping closes the stream, and checks it saw --count.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>

#include "examples/ping_pong/common.h"
#include "examples/ping_pong/options.h"

int main(int argc, char** argv) {
  using namespace shmlink;
  CLI::App app{"pong: echoes `ping`'s messages over two shared-memory SPSC rings"};
  ping_pong::SharedOptions flags;
  uint64_t count = 100000;
  uint64_t size = 0;
  ping_pong::AddNameOption(app, flags, "ping");
  app.add_option("--count", count, "round trips expected (0: any)");
  app.add_option("--size", size, "expected message size (0: any)");
  ping_pong::AddWaitOptions(app, flags, "ping");
  CLI11_PARSE(app, argc, argv);

  const auto limit = std::chrono::milliseconds(static_cast<int64_t>(flags.timeout_s * 1000));
  if (auto ok = Segment::ValidateName(flags.name + ".ping"); !ok) {
    std::fprintf(stderr, "pong: bad --name %s: %s\n", flags.name.c_str(),
                 ok.error().message().c_str());
    return 1;
  }
  auto in = ping_pong::AttachWithRetry(ping_pong::PingName(flags.name), limit);
  if (!in) {
    std::fprintf(stderr, "pong: attach %s: %s\n", ping_pong::PingName(flags.name).c_str(),
                 in.error().message().c_str());
    return 1;
  }
  auto out = ping_pong::AttachWithRetry(ping_pong::PongName(flags.name), limit);
  if (!out) {
    std::fprintf(stderr, "pong: attach %s: %s\n", ping_pong::PongName(flags.name).c_str(),
                 out.error().message().c_str());
    return 1;
  }
  auto rx = in->Consumer();
  auto tx = out->Producer();
  if (!rx || !tx) {
    std::fprintf(stderr, "pong: claiming roles: %s\n",
                 (!rx ? rx.error() : tx.error()).message().c_str());
    return 1;
  }
  const WaitOptions opts = ping_pong::ParseWait(flags.wait);
  uint64_t seen = 0;
  for (;;) {
    auto msg = rx->peek(opts);
    if (!msg) {
      if (msg.error() == RingErrc::kClosed) break;  // ping is done
      std::fprintf(stderr, "pong: %s\n", msg.error().message().c_str());
      return 1;
    }
    if (size != 0 && msg->size() != size) {
      std::fprintf(stderr, "pong: message of %zu B, expected %llu\n", msg->size(),
                   static_cast<unsigned long long>(size));
      return 1;
    }
    auto buf = tx->reserve(msg->size(), opts);
    if (!buf) {
      std::fprintf(stderr, "pong: reserve: %s\n", buf.error().message().c_str());
      return 1;
    }
    std::memcpy(buf->data(), msg->data(), msg->size());
    tx->commit();
    rx->release();
    ++seen;
  }
  tx->close();
  if (count != 0 && seen != count) {
    std::fprintf(stderr, "pong: echoed %llu messages, expected %llu\n",
                 static_cast<unsigned long long>(seen), static_cast<unsigned long long>(count));
    return 1;
  }
  std::printf("pong: echoed %llu messages\n", static_cast<unsigned long long>(seen));
  return 0;
}
