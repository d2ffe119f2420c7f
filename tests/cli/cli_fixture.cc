// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Real segments for the `shmlink` command's tests, one mode per scenario:
//
//   cli_fixture hold NAME               ring (kept on exit), producer + consumer held; waits
//   cli_fixture count NAME N SIZE       ring; N messages of SIZE bytes sent and consumed by a
//                                       forked consumer; both then wait
//   cli_fixture rate NAME MSGS_PER_S    ring; a paced producer (absolute deadlines, so stalls
//                                       are caught up) and a forked consumer; runs until
//                                       SIGTERM, then closes and removes the ring
//   cli_fixture mpmc NAME               queue (kept): 10 pushed, 4 popped; handles held
//   cli_fixture mpmc-stopped NAME       queue (kept): a forked producer claims the head slot
//                                       and stops itself (SIGSTOP) before publishing; waits
//   cli_fixture object NAME             shared object (kept); waits
//   cli_fixture recreate NAME ITERS     create (holding the producer role) / destroy NAME in
//                                       a loop; each time, checks that the name still refers
//                                       to its own file before destroying it
//   cli_fixture reclaim NAME            create NAME over a stale one (reclaim_stale), hold the
//                                       producer role, print "ready"; at a line on stdin
//                                       print "intact" if NAME still refers to its file, else
//                                       "lost"; then waits
//
// Every waiting mode prints "ready" on stdout once its segment is set up. Exit status 0, or
// 1 with a message on stderr.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <shmlink/mpmc_queue.h>
#include <shmlink/shared_object.h>
#include <shmlink/spsc_ring.h>

using namespace shmlink;

namespace {

std::atomic<bool> g_stop{false};
void OnTerm(int) { g_stop.store(true); }

[[noreturn]] void Die(const char* what, const std::error_code& ec) {
  std::fprintf(stderr, "cli_fixture: %s: %s\n", what, ec.message().c_str());
  std::exit(1);
}

void Ready() {
  std::printf("ready\n");
  std::fflush(stdout);
}

[[noreturn]] void WaitForever() {
  for (;;) ::pause();
}

SpscRing CreateRing(const std::string& name, uint64_t cap, UnlinkPolicy policy) {
  SpscRing::CreateOptions o;
  o.unlink = policy;
  auto ring = SpscRing::Create(name, cap, o);
  if (!ring) Die("create", ring.error());
  return std::move(*ring);
}

// Forks a consumer that attaches by name and consumes until the stream closes. It also
// exits when its parent dies (kPeerDead after draining).
pid_t ForkConsumer(const std::string& name, bool wait_after) {
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  auto ring = SpscRing::Attach(name);
  if (!ring) Die("attach", ring.error());
  auto rx = ring->Consumer();
  if (!rx) Die("consumer", rx.error());
  std::vector<std::byte> buf(ring->max_message_size());
  for (;;) {
    auto n = rx->recv(buf, WaitOptions::WithTimeout(std::chrono::milliseconds(200)));
    if (n) continue;
    if (n.error() == RingErrc::kTimedOut && wait_after) break;
    if (n.error() == RingErrc::kTimedOut) continue;
    break;  // kClosed, kPeerDead
  }
  if (wait_after) {
    Ready();  // the consumer's "ready": every message was consumed
    WaitForever();
  }
  std::_Exit(0);
}

int Hold(const std::string& name) {
  SpscRing ring = CreateRing(name, 4096, UnlinkPolicy::kKeep);
  auto tx = ring.Producer();
  auto rx = ring.Consumer();
  if (!tx || !rx) Die("roles", tx ? rx.error() : tx.error());
  Ready();
  WaitForever();
}

int Count(const std::string& name, int n, size_t size) {
  SpscRing ring = CreateRing(name, 1 << 16, UnlinkPolicy::kKeep);
  auto tx = ring.Producer();
  if (!tx) Die("producer", tx.error());
  ForkConsumer(name, /*wait_after=*/true);  // prints "ready" once drained
  std::vector<std::byte> msg(size, std::byte{7});
  for (int i = 0; i < n; ++i) {
    if (auto ok = tx->send(msg); !ok) Die("send", ok.error());
  }
  WaitForever();
}

int Rate(const std::string& name, double per_s) {
  ::signal(SIGTERM, OnTerm);
  SpscRing ring = CreateRing(name, 1 << 20, UnlinkPolicy::kUnlinkOnDestroy);
  auto tx = ring.Producer();
  if (!tx) Die("producer", tx.error());
  const pid_t child = ForkConsumer(name, /*wait_after=*/false);
  Ready();
  std::vector<std::byte> msg(100, std::byte{1});
  const auto period = std::chrono::duration<double>(1.0 / per_s);
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t i = 1; !g_stop.load(); ++i) {
    if (auto ok = tx->send(msg); !ok) Die("send", ok.error());
    // Absolute deadlines: a stalled producer catches up, so any long window holds
    // per_s * window messages give or take one.
    std::this_thread::sleep_until(
        t0 + std::chrono::duration_cast<std::chrono::nanoseconds>(period * static_cast<double>(i)));
  }
  tx->close();
  int status = 0;
  ::waitpid(child, &status, 0);
  return 0;
}

int Mpmc(const std::string& name) {
  MpmcQueue::CreateOptions o;
  o.unlink = UnlinkPolicy::kKeep;
  auto q = MpmcQueue::Create(name, 16, 64, o);
  if (!q) Die("create", q.error());
  auto tx = q->Producer();
  auto rx = q->Consumer();
  if (!tx || !rx) Die("handles", tx ? rx.error() : tx.error());
  const std::byte msg[10] = {};
  for (int i = 0; i < 10; ++i) {
    if (auto ok = tx->try_push(msg); !ok) Die("push", ok.error());
  }
  std::byte buf[64];
  for (int i = 0; i < 4; ++i) {
    if (auto ok = rx->try_pop(buf); !ok) Die("pop", ok.error());
  }
  Ready();
  WaitForever();
}

int MpmcStopped(const std::string& name) {
  MpmcQueue::CreateOptions o;
  o.unlink = UnlinkPolicy::kKeep;
  auto q = MpmcQueue::Create(name, 16, 64, o);
  if (!q) Die("create", q.error());
  auto rx = q->Consumer();
  if (!rx) Die("consumer", rx.error());
  const pid_t child = ::fork();
  if (child == 0) {
    auto tx = q->Producer();
    if (!tx || !tx->try_claim(8)) ::_exit(2);
    ::raise(SIGSTOP);  // stopped between claim and publish
    ::_exit(0);
  }
  int status = 0;
  if (child < 0 || ::waitpid(child, &status, WUNTRACED) != child || !WIFSTOPPED(status)) {
    std::fprintf(stderr, "the producer did not stop\n");
    return 1;
  }
  Ready();
  WaitForever();
}

int Object(const std::string& name) {
  SharedObject::CreateOptions o;
  o.unlink = UnlinkPolicy::kKeep;
  o.elem_size = 8;
  auto obj = SharedObject::Create(name, 64, o);
  if (!obj) Die("create", obj.error());
  Ready();
  WaitForever();
}

int Recreate(const std::string& name, int iters) {
  int violations = 0;
  for (int i = 0; i < iters; ++i) {
    auto ring = SpscRing::Create(name, 4096);  // unlinked when destroyed
    if (!ring) {
      if (ring.error() == std::errc::file_exists) continue;  // a previous one lingers
      Die("create", ring.error());
    }
    auto tx = ring->Producer();
    if (!tx) Die("producer", tx.error());
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    struct stat mine {
    }, named{};
    ::fstat(ring->segment().fd(), &mine);
    const std::string path = "/dev/shm" + name;
    if (::stat(path.c_str(), &named) != 0 || named.st_ino != mine.st_ino) ++violations;
  }
  std::printf("violations %d\n", violations);
  return violations == 0 ? 0 : 1;
}

int Reclaim(const std::string& name) {
  auto ring = SpscRing::Create(name, 4096);  // reclaim_stale is the default
  if (!ring) Die("create", ring.error());
  auto tx = ring->Producer();
  if (!tx) Die("producer", tx.error());
  Ready();
  char line[16];
  if (std::fgets(line, sizeof(line), stdin) == nullptr) return 1;
  struct stat mine {
  }, named{};
  ::fstat(ring->segment().fd(), &mine);
  const std::string path = "/dev/shm" + name;
  const bool intact = ::stat(path.c_str(), &named) == 0 && named.st_ino == mine.st_ino;
  std::printf("%s\n", intact ? "intact" : "lost");
  std::fflush(stdout);
  WaitForever();  // keeps the segment (and its role) until killed
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: cli_fixture MODE NAME [ARGS]\n");
    return 2;
  }
  const std::string mode = argv[1], name = argv[2];
  if (mode == "hold") return Hold(name);
  if (mode == "count" && argc == 5) return Count(name, std::atoi(argv[3]), std::atoi(argv[4]));
  if (mode == "rate" && argc == 4) return Rate(name, std::atof(argv[3]));
  if (mode == "mpmc") return Mpmc(name);
  if (mode == "mpmc-stopped") return MpmcStopped(name);
  if (mode == "object") return Object(name);
  if (mode == "reclaim") return Reclaim(name);
  if (mode == "recreate" && argc == 4) return Recreate(name, std::atoi(argv[3]));
  std::fprintf(stderr, "cli_fixture: bad arguments\n");
  return 2;
}
