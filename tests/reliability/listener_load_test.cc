// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Load: 256 concurrent client processes each exchange request/echo traffic with one
// Listener (this process, one thread per connection) for a bounded time. Every message is
// accounted for (each client checks every echo byte for byte; the per-connection counts
// of both sides must agree), and after all connections closed the listener's open file
// descriptors, its shmlink ring mappings and (over a second round) its RSS are flat.
// A quarter of the clients use the socket data path (enable_shm = false), the rest the
// shared-memory rings.
#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"

#include <shmlink/connection.h>

namespace shmlink::transport {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int kClients = testing::kSanitized ? 64 : 256;
constexpr auto kExchangeTime = milliseconds(testing::kSanitized ? 500 : 1000);
constexpr int kMaxClients = 256;
constexpr char kKey[] = "load test key";

struct Shared {
  std::atomic<uint64_t> client_sent[kMaxClients];
  std::atomic<uint64_t> client_ok[kMaxClients];  // echoes received and verified
  std::atomic<uint32_t> client_done[kMaxClients];
};

// Mappings of shmlink ring segments (memfd "shmlink" or /dev/shm/shmlink-*).
int CountRingMappings() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  int n = 0;
  while (std::getline(maps, line)) {
    if (line.find("memfd:shmlink") != std::string::npos ||
        line.find("/dev/shm/shmlink") != std::string::npos) {
      ++n;
    }
  }
  return n;
}

// Resident memory after handing free heap pages back to the kernel: the 256 server
// threads of a round spread their allocations over glibc's per-thread arenas, whose freed
// pages would otherwise stay resident and vary between rounds without any leak. Live
// allocations (a real leak) stay resident and are still counted.
long RssKiB() {
  ::malloc_trim(0);
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

ConnectionOptions Options(bool shm) {
  ConnectionOptions o;
  o.enable_shm = shm;
  o.ring_capacity = 16 << 10;
  o.wait = WaitOptions::Sleep();  // 512 waiters on 2 cores: do not spin
  o.handshake_timeout = milliseconds(20000);
  return o;
}

int ClientMain(const std::string& path, int id, Shared* sh) {
  const bool shm = id % 4 != 0;
  const auto give_up = Clock::now() + std::chrono::seconds(40);
  Expected<Connection> conn = TransportErrc::kTimedOut;
  for (;;) {
    conn = Client(Address::UnixPath(path), kKey, Options(shm));
    if (conn) break;
    // The backlog may be full for a moment; anything else is a failure.
    if (Clock::now() > give_up || !(conn.error() == std::errc::resource_unavailable_try_again ||
                                    conn.error() == std::errc::connection_refused)) {
      std::fprintf(stderr, "client %d: connect: %s\n", id, conn.error().message().c_str());
      return 2;
    }
    ::usleep(1000);
  }
  if (conn->is_shm() != shm) return 3;
  std::mt19937 rng(id);
  std::vector<std::byte> msg;
  const auto stop = Clock::now() + kExchangeTime;
  for (uint32_t seq = 0; Clock::now() < stop; ++seq) {
    msg.resize(8 + rng() % 256);
    std::memcpy(msg.data(), &id, 4);
    std::memcpy(msg.data() + 4, &seq, 4);
    for (size_t i = 8; i < msg.size(); ++i) msg[i] = std::byte(static_cast<uint8_t>(seq + i));
    auto s = conn->send_bytes(msg);
    if (!s) return 4;
    sh->client_sent[id].fetch_add(1);
    auto echo = conn->recv_bytes(std::chrono::seconds(20));
    if (!echo) {
      std::fprintf(stderr, "client %d: recv: %s\n", id, echo.error().message().c_str());
      return 5;
    }
    if (*echo != msg) return 6;
    sh->client_ok[id].fetch_add(1);
  }
  conn->close();
  sh->client_done[id].store(1);
  return 0;
}

struct ServerSide {
  std::atomic<uint64_t> echoed{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> closed_ok{0};
};

void Serve(Connection conn, ServerSide* s) {
  for (;;) {
    auto m = conn.recv_bytes(std::chrono::seconds(30));
    if (!m) {
      if (m.error() == TransportErrc::kClosed) {
        s->closed_ok.fetch_add(1);
      } else {
        std::fprintf(stderr, "server: recv: %s\n", m.error().message().c_str());
        s->errors.fetch_add(1);
      }
      return;
    }
    auto r = conn.send_bytes(*m);
    if (!r) {
      s->errors.fetch_add(1);
      return;
    }
    s->echoed.fetch_add(1);
  }
}

// One round: kClients processes against a fresh listener. Returns messages exchanged.
uint64_t RunRound(int round) {
  const std::string path = testing::UniqueSocketPath("load");
  ListenerOptions lo;
  lo.connection = Options(true);
  lo.backlog = kMaxClients;
  auto listener = Listener::Create(Address::UnixPath(path), kKey, lo);
  EXPECT_TRUE(listener) << listener.error().message();
  if (!listener) return 0;
  Shared* sh = testing::NewShared<Shared>();
  // Fork every client before the first server thread exists (fork + threads do not mix).
  std::vector<pid_t> pids;
  for (int id = 0; id < kClients; ++id) {
    pids.push_back(testing::ForkChild([&] { return ClientMain(path, id, sh); }));
  }
  ServerSide side;
  std::vector<std::thread> threads;
  int accept_errors = 0;
  const auto accept_deadline = Clock::now() + std::chrono::seconds(40);
  while (static_cast<int>(threads.size()) < kClients && Clock::now() < accept_deadline) {
    auto conn = listener->accept(std::chrono::seconds(1));
    if (!conn) {
      if (conn.error() != TransportErrc::kTimedOut) {
        std::fprintf(stderr, "accept: %s\n", conn.error().message().c_str());
        ++accept_errors;
      }
      continue;
    }
    threads.emplace_back(Serve, std::move(*conn), &side);
  }
  EXPECT_EQ(static_cast<int>(threads.size()), kClients);
  EXPECT_EQ(accept_errors, 0);
  int failed = 0;
  for (pid_t pid : pids) failed += testing::WaitChild(pid) != 0;
  for (auto& t : threads) t.join();
  listener->close();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(side.errors.load(), 0u);
  EXPECT_EQ(side.closed_ok.load(), static_cast<uint64_t>(kClients));
  uint64_t sent = 0, ok = 0;
  int done = 0, idle = 0;
  for (int id = 0; id < kClients; ++id) {
    sent += sh->client_sent[id].load();
    ok += sh->client_ok[id].load();
    done += sh->client_done[id].load();
    idle += sh->client_sent[id].load() == 0;
  }
  // Every request was echoed exactly once and verified by its client.
  EXPECT_EQ(ok, sent);
  EXPECT_EQ(side.echoed.load(), sent);
  EXPECT_EQ(done, kClients);
  EXPECT_EQ(idle, 0);  // every client really exchanged traffic
  EXPECT_NE(::access(path.c_str(), F_OK), 0) << "socket file left behind";
  testing::DeleteShared(sh);
  std::printf("round %d: %d clients, %llu request/echo pairs\n", round, kClients,
              static_cast<unsigned long long>(sent));
  return sent;
}

TEST(ListenerLoad, ManyClientProcessesEveryMessageAccountedResourcesFlat) {
  const int fds_before = testing::OpenFdCount();
  const int maps_before = CountRingMappings();
  EXPECT_GT(RunRound(1), 0u);
  const long rss_after_first = RssKiB();
  EXPECT_EQ(testing::OpenFdCount(), fds_before)
      << "fds leaked after " << kClients << " connections";
  EXPECT_EQ(CountRingMappings(), maps_before) << "ring mappings leaked";
  EXPECT_GT(RunRound(2), 0u);
  const long rss_after_second = RssKiB();
  EXPECT_EQ(testing::OpenFdCount(), fds_before);
  EXPECT_EQ(CountRingMappings(), maps_before);
  std::printf("listener: fds %d -> %d, RSS after round 1: %ld KiB, after round 2: %ld KiB\n",
              fds_before, testing::OpenFdCount(), rss_after_first, rss_after_second);
  if (!testing::kSanitized) {
    // A second identical round must not grow the listener: a per-connection leak of even a
    // 16 KiB ring (x2 directions x 256) or a thread stack would show as megabytes.
    EXPECT_LT(rss_after_second - rss_after_first, 4096) << "RSS grew by a second round";
  }
}

}  // namespace
}  // namespace shmlink::transport
