// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// A program as a user of the installed library writes it: includes <shmlink/shmlink.h>,
// creates a ring, forks a consumer process and passes 10 000 checksummed messages, then
// publishes 1 000 numbers on a topic to a forked subscriber.
//   ring_pass                 fork a consumer, pass the messages, exit 0 if all arrived
//   ring_pass --produce NAME  create ring NAME, wait for a consumer (another process, e.g.
//                             Python's shmlink.Ring.attach) and send the messages
// Message i is 8 bytes of i followed by (i % 200) bytes of (i * 7 + k) & 0xff; the reader
// checks every byte and the order.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <shmlink/shmlink.h>

namespace {

constexpr uint64_t kMessages = 10000;

std::vector<std::byte> MessageOf(uint64_t i) {
  std::vector<std::byte> msg(8 + i % 200);
  std::memcpy(msg.data(), &i, 8);
  for (size_t k = 8; k < msg.size(); ++k) msg[k] = std::byte((i * 7 + k) & 0xff);
  return msg;
}

int Produce(const shmlink::SpscRing& ring) {
  auto tx = ring.Producer();
  if (!tx) {
    std::fprintf(stderr, "producer: %s\n", tx.error().message().c_str());
    return 1;
  }
  for (uint64_t i = 0; i < kMessages; ++i) {
    auto msg = MessageOf(i);
    if (auto sent = tx->send(msg); !sent) {
      std::fprintf(stderr, "send %llu: %s\n", static_cast<unsigned long long>(i),
                   sent.error().message().c_str());
      return 1;
    }
  }
  tx->close();
  return 0;
}

int Consume(const shmlink::SpscRing& ring) {
  auto rx = ring.Consumer();
  if (!rx) return 2;
  for (uint64_t i = 0; i < kMessages; ++i) {
    auto msg = rx->peek();
    if (!msg) return 3;
    auto want = MessageOf(i);
    if (msg->size() != want.size() || std::memcmp(msg->data(), want.data(), want.size()) != 0) {
      return 4;
    }
    rx->release();
  }
  auto end = rx->peek();
  return !end && end.error() == shmlink::RingErrc::kClosed ? 0 : 6;
}

// A typed topic: the child subscribes before the parent publishes (kBlock: the publisher
// waits for it), receives 0..kQuotes-1 in order, then the end of stream.
constexpr uint64_t kQuotes = 1000;

int TopicPass() {
  std::string name = "/shmlink-consumer-topic-" + std::to_string(getpid());
  shmlink::TopicOptions opts;
  opts.capacity = 1 << 14;
  auto topic = shmlink::Topic::Create<uint64_t>(name, opts);
  if (!topic) {
    std::fprintf(stderr, "topic create: %s\n", topic.error().message().c_str());
    return 1;
  }
  int ready[2];
  if (pipe(ready) != 0) return 1;
  pid_t child = fork();
  if (child == 0) {
    auto sub = topic->Subscriber();
    char one = 1;
    if (!sub || write(ready[1], &one, 1) != 1) _exit(2);
    for (uint64_t i = 0; i < kQuotes; ++i) {
      auto v = sub->receive<uint64_t>();
      if (!v || **v != i) _exit(3);
      if (!sub->release()) _exit(4);
    }
    auto end = sub->receive<uint64_t>();
    _exit(!end && end.error() == shmlink::RingErrc::kClosed ? 0 : 5);
  }
  char one = 0;
  auto pub = topic->Publisher();
  int rc = pub && read(ready[0], &one, 1) == 1 ? 0 : 1;
  for (uint64_t i = 0; rc == 0 && i < kQuotes; ++i) {
    if (!pub->send(i)) rc = 1;
  }
  if (pub) pub->close();
  int status = 0;
  waitpid(child, &status, 0);
  close(ready[0]);
  close(ready[1]);
  if (rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "topic: publisher %d, subscriber status %d\n", rc, status);
    return 1;
  }
  std::printf("ring_pass: %llu topic messages received\n",
              static_cast<unsigned long long>(kQuotes));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::printf("shmlink %s\n", shmlink::version_string());
  if (argc == 3 && std::string(argv[1]) == "--produce") {
    auto ring = shmlink::SpscRing::Create(argv[2], 1 << 16);
    if (!ring) {
      std::fprintf(stderr, "create %s: %s\n", argv[2], ring.error().message().c_str());
      return 1;
    }
    int rc = Produce(*ring);
    // Wait until the reader has drained the ring before the name goes away.
    (void)ring->Unlink();
    return rc;
  }
  std::string name = "/shmlink-consumer-" + std::to_string(getpid());
  auto ring = shmlink::SpscRing::Create(name, 1 << 16);
  if (!ring) {
    std::fprintf(stderr, "create: %s\n", ring.error().message().c_str());
    return 1;
  }
  (void)ring->Unlink();  // both processes hold the mapping; nothing is left in /dev/shm
  pid_t child = fork();
  if (child == 0) _exit(Consume(*ring));
  int rc = Produce(*ring);
  int status = 0;
  waitpid(child, &status, 0);
  if (rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "ring_pass: producer %d, consumer status %d\n", rc, status);
    return 1;
  }
  std::printf("ring_pass: %llu messages passed\n", static_cast<unsigned long long>(kMessages));
  return TopicPass();
}
