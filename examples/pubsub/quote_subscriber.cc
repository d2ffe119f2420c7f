// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// quote_subscriber: a C++ subscriber of the quote topic. Reads every quote in place until
// the stream ends, checks that sequence numbers have no gap (block policy), and prints one
// summary line as JSON.
//
//   quote_subscriber [--topic /quotes] [--attach-timeout-ms 10000] [--create 1]
//
// --create 1 creates the topic (typed, block policy) instead of waiting for a publisher to
// create it: for a host whose feed arrives through shmlink-bridge, which then attaches to
// this typed topic and publishes into it (across_namespaces.sh does that).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "examples/pubsub/quote.h"

#include <shmlink/topic.h>

namespace {

// Reads every quote in place until the stream ends; prints the summary line.
int Consume(const shmlink::Topic& topic) {
  auto sub = topic.Subscriber();
  if (!sub) {
    std::fprintf(stderr, "subscribe: %s\n", sub.error().message().c_str());
    return 1;
  }
  uint64_t count = 0;
  uint64_t gaps = 0;
  uint64_t first = 0;
  uint64_t expect = 0;
  double mid_sum = 0;
  for (;;) {
    auto q = sub->receive<feed::Quote>();
    if (!q) {
      if (q.error() == shmlink::RingErrc::kClosed) break;
      std::fprintf(stderr, "receive: %s\n", q.error().message().c_str());
      return 1;
    }
    const feed::Quote& quote = **q;  // in place, no copy
    if (count == 0) first = quote.seq;
    if (count != 0 && quote.seq != expect) ++gaps;
    expect = quote.seq + 1;
    mid_sum += (quote.bid + quote.ask) / 2;
    ++count;
    if (!sub->release()) ++gaps;  // overwritten while read (overwrite policy only)
  }
  std::printf(
      "{\"subscriber\": \"c++\", \"count\": %llu, \"first\": %llu, \"gaps\": %llu, "
      "\"lost\": %llu, \"mean_mid\": %.6f}\n",
      static_cast<unsigned long long>(count), static_cast<unsigned long long>(first),
      static_cast<unsigned long long>(gaps), static_cast<unsigned long long>(sub->total_lost()),
      count ? mid_sum / static_cast<double>(count) : 0.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string name = "/quotes";
  int attach_ms = 10000;
  bool create = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--topic") name = argv[i + 1];
    if (k == "--attach-timeout-ms") attach_ms = std::atoi(argv[i + 1]);
    if (k == "--create") create = std::atoi(argv[i + 1]) != 0;
  }
  if (create) {
    shmlink::TopicOptions opts;
    opts.capacity = 1 << 20;
    auto created = shmlink::Topic::Create<feed::Quote>(name, opts);
    if (!created) {
      std::fprintf(stderr, "create %s: %s\n", name.c_str(), created.error().message().c_str());
      return 1;
    }
    return Consume(*created);
  }
  // The publisher may not have created the topic yet.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(attach_ms);
  auto topic = shmlink::Topic::Attach<feed::Quote>(name);
  while (!topic && std::chrono::steady_clock::now() < deadline &&
         (topic.error() == std::errc::no_such_file_or_directory ||
          topic.error() == shmlink::RingErrc::kNotReady)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    topic = shmlink::Topic::Attach<feed::Quote>(name);
  }
  if (!topic) {
    std::fprintf(stderr, "attach %s: %s\n", name.c_str(), topic.error().message().c_str());
    return 1;
  }
  return Consume(*topic);
}
