// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// quote_publisher: publishes feed::Quote structs on a typed topic at a steady rate. Any
// number of subscribers (quote_subscriber, quote_summary.py) attach by name.
//
//   quote_publisher [--topic /quotes] [--rate 10000] [--count 0] [--history 64]
//                   [--policy block|overwrite] [--wait-subscribers 0]
//
// --count 0 publishes until SIGINT/SIGTERM; then it closes the stream (subscribers see the
// end) and removes the topic. --wait-subscribers N waits until N subscribers joined.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "examples/pubsub/quote.h"

#include <shmlink/topic.h>

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop.store(true, std::memory_order_relaxed); }

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

}  // namespace

int main(int argc, char** argv) {
  std::string name = "/quotes";
  double rate = 10000;
  uint64_t count = 0;
  uint64_t history = 64;
  uint32_t wait_subscribers = 0;
  shmlink::TopicPolicy policy = shmlink::TopicPolicy::kBlock;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--topic") {
      name = v;
    } else if (k == "--rate") {
      rate = std::atof(v);
    } else if (k == "--count") {
      count = std::strtoull(v, nullptr, 10);
    } else if (k == "--history") {
      history = std::strtoull(v, nullptr, 10);
    } else if (k == "--wait-subscribers") {
      wait_subscribers = static_cast<uint32_t>(std::strtoul(v, nullptr, 10));
    } else if (k == "--policy") {
      policy = std::string(v) == "overwrite" ? shmlink::TopicPolicy::kOverwrite
                                             : shmlink::TopicPolicy::kBlock;
    } else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);

  shmlink::TopicOptions opts;
  opts.capacity = 1 << 20;
  opts.history = history;
  opts.policy = policy;
  auto topic = shmlink::Topic::Create<feed::Quote>(name, opts);
  if (!topic) {
    std::fprintf(stderr, "create %s: %s\n", name.c_str(), topic.error().message().c_str());
    return 1;
  }
  auto pub = topic->Publisher();
  if (!pub) {
    std::fprintf(stderr, "publisher: %s\n", pub.error().message().c_str());
    return 1;
  }
  while (topic->subscriber_count() < wait_subscribers && !g_stop.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const auto period = std::chrono::nanoseconds(static_cast<int64_t>(1e9 / rate));
  auto next = std::chrono::steady_clock::now();
  double mid = 100.0;
  uint64_t seq = 0;
  for (; (count == 0 || seq < count) && !g_stop.load(std::memory_order_relaxed); ++seq) {
    // A random walk of the mid price; the spread widens with the size of the move.
    const double move = std::sin(static_cast<double>(seq) * 0.37) * 0.01;
    mid += move;
    auto q = pub->loan<feed::Quote>(shmlink::WaitOptions::WithTimeout(std::chrono::seconds(10)));
    if (!q) {
      std::fprintf(stderr, "loan: %s\n", q.error().message().c_str());
      return 1;
    }
    feed::Quote* out = *q;  // written in place in shared memory
    out->seq = seq;
    out->ts_ns = NowNs();
    out->bid = mid - 0.01 - std::fabs(move);
    out->ask = mid + 0.01 + std::fabs(move);
    out->bid_size = 100 + static_cast<uint32_t>(seq % 7) * 10;
    out->ask_size = 100 + static_cast<uint32_t>(seq % 5) * 10;
    std::memset(out->symbol, 0, sizeof(out->symbol));
    std::memcpy(out->symbol, "SHML", 4);
    if (!pub->publish()) return 1;
    next += period;
    std::this_thread::sleep_until(next);
  }
  pub->close();
  std::printf("published %llu quotes on %s to %u subscribers\n",
              static_cast<unsigned long long>(seq), name.c_str(), topic->subscriber_count());
  // The creator's Topic unlinks the name on exit; attached subscribers keep their mapping.
  return 0;
}
