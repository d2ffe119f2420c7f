// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// SPSC rings and Connections decide a peer's liveness from its holder locks (the kernel's
// word, holder_lock.h), in the cases where pid + start time from /proc went wrong. Real
// processes, real shared memory, real sockets, kill -9, exec, unshare:
//  * a holder that execs (same pid, same start time) holds nothing: its role can be taken
//    over and its peer's wait ends with kPeerDead;
//  * a holder in another PID namespace is alive while it lives and dead after kill -9;
//  * a holder whose main thread exited while another thread runs (a zombie leader in
//    /proc) is alive: no takeover, no kPeerDead;
//  * a checker that cannot read /proc (tmpfs mounted over it in its own mount namespace)
//    still gets every answer right, including for a peer killed but not yet reaped;
//  * a successor of a holder killed asleep resets that holder's announced wait, so the
//    other side makes no wake call per commit for it; a Connection whose reader died with
//    fileno() armed sends it no doorbell per commit.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "tests/liveness/namespaces.h"
#include "tests/test_util.h"

#include <shmlink/connection.h>
#include <shmlink/holder_lock.h>
#include <shmlink/segment.h>
#include <shmlink/spsc_layout.h>
#include <shmlink/spsc_ring.h>

namespace shmlink {
namespace {

using testing::Eventually;

using namespace std::chrono_literals;
using testing::Bytes;
using testing::ForkChild;
using testing::HideProc;
using testing::PidNsShared;
using testing::Signal;
using testing::StartInPidNamespace;
using testing::Str;
using testing::UniqueShmName;

constexpr std::string_view kKey = "liveness key";

std::string ReadSmall(const std::string& path) {
  std::string out;
  if (FILE* f = std::fopen(path.c_str(), "re")) {
    char buf[512];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
    std::fclose(f);
  }
  return out;
}

// The state letter of /proc/<pid>/stat (0 if unreadable).
char ProcState(pid_t pid) {
  const std::string s = ReadSmall("/proc/" + std::to_string(pid) + "/stat");
  const size_t p = s.rfind(')');
  return p != std::string::npos && p + 2 < s.size() ? s[p + 2] : 0;
}

// True while the (single-threaded) process `pid` sleeps inside futex(2): state S, and its
// current system call is futex (/proc/<pid>/syscall), or its wait channel names a futex
// function where the syscall file is not available.
bool SleepsInFutex(pid_t pid) {
  if (ProcState(pid) != 'S') return false;
  const std::string sc = ReadSmall("/proc/" + std::to_string(pid) + "/syscall");
  if (!sc.empty() && sc != "running\n") {
    return std::strtol(sc.c_str(), nullptr, 10) == SYS_futex;
  }
  return ReadSmall("/proc/" + std::to_string(pid) + "/wchan").find("futex") != std::string::npos;
}

void KillAndReap(pid_t pid) {
  ::kill(pid, SIGKILL);
  EXPECT_EQ(testing::WaitChild(pid), 128 + SIGKILL);
}

// Forks a child whose main thread exits (leaving a zombie leader in /proc) while another
// thread runs `body` and then sleeps for ever. `setup` runs first, on the main thread.
pid_t ForkZombieLeader(const std::function<void()>& setup) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    setup();
    std::thread([] {
      for (;;) ::pause();
    }).detach();
    ::syscall(SYS_exit, 0);  // this thread only, no unwinding into the test framework
  }
  return pid;
}

// ================================================================== SpscRing

SpscRegion RegionOf(const SpscRing& ring) {
  auto g = ValidateSpscSegment(ring.segment(), SegmentKind::kSpscRing, 1);
  return g ? SpscRegionAt(ring.segment(), *g, 0) : SpscRegion{};
}

uint64_t RegionTakeovers(const SpscRing& ring, bool producer) {
  const SpscControl* c = RegionOf(ring).control;
  return (producer ? c->producer_stats : c->consumer_stats).takeovers.load();
}

// A producer child: attaches `name`, claims the producer role, sends `first`, notifies.
int ProducerBody(const std::string& name, const char* first, const Signal& ready,
                 std::optional<SpscProducer>* keep) {
  auto ring = SpscRing::Attach(name);
  if (!ring) return 10;
  auto tx = ring->Producer();
  if (!tx) return 11;
  if (!tx->try_send(Bytes(first))) return 12;
  keep->emplace(std::move(*tx));
  ready.Notify();
  return 0;
}

TEST(SpscLiveness, ExecedProducerHoldsNothing) {
  auto ring = SpscRing::Create(UniqueShmName("live-exec-tx"), 4096);
  ASSERT_TRUE(ring) << ring.error().message();
  auto rx = ring->Consumer();
  ASSERT_TRUE(rx);
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t child = ForkChild([&]() -> int {
    auto tx = ring->Producer();
    if (!tx || !tx->try_send(Bytes("before exec"))) return 3;
    ::dup2(pipefd[1], 3);  // not CLOEXEC: the new image reports on it once it runs
    ::execl("/bin/sh", "sh", "-c", "printf x >&3; exec sleep 60", static_cast<char*>(nullptr));
    return 4;
  });
  ::close(pipefd[1]);
  char c = 0;
  ASSERT_EQ(::read(pipefd[0], &c, 1), 1);  // the exec'd image runs: same pid, same start
  ::close(pipefd[0]);
  auto m = rx->peek(WaitOptions::WithTimeout(10s));
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(Str(*m), "before exec");
  rx->release();
  m = rx->peek(WaitOptions::WithTimeout(10s));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error(), RingErrc::kPeerDead) << m.error().message();
  EXPECT_FALSE(testing::HasExited(child));
  auto tx = ring->Producer();  // taken over from the exec'd holder
  ASSERT_TRUE(tx) << tx.error().message();
  EXPECT_EQ(RegionTakeovers(*ring, true), 1u);
  ASSERT_TRUE(tx->try_send(Bytes("after")));
  m = rx->try_peek();
  ASSERT_TRUE(m);
  EXPECT_EQ(Str(*m), "after");
  KillAndReap(child);
}

TEST(SpscLiveness, ExecedConsumerHoldsNothing) {
  auto ring = SpscRing::Create(UniqueShmName("live-exec-rx"), 4096);
  ASSERT_TRUE(ring) << ring.error().message();
  auto tx = ring->Producer();
  ASSERT_TRUE(tx);
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t child = ForkChild([&]() -> int {
    auto rx = ring->Consumer();
    if (!rx) return 3;
    ::dup2(pipefd[1], 3);
    ::execl("/bin/sh", "sh", "-c", "printf x >&3; exec sleep 60", static_cast<char*>(nullptr));
    return 4;
  });
  ::close(pipefd[1]);
  char c = 0;
  ASSERT_EQ(::read(pipefd[0], &c, 1), 1);
  ::close(pipefd[0]);
  while (tx->try_send(Bytes(std::string(100, 'f')))) {
  }
  auto b = tx->reserve(100, WaitOptions::WithTimeout(10s));  // full: waits for the reader
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error(), RingErrc::kPeerDead) << b.error().message();
  EXPECT_FALSE(testing::HasExited(child));
  auto rx = ring->Consumer();
  ASSERT_TRUE(rx) << rx.error().message();
  EXPECT_EQ(RegionTakeovers(*ring, false), 1u);
  KillAndReap(child);
}

TEST(SpscLiveness, ProducerInAnotherPidNamespaceAliveThenDead) {
  auto ring = SpscRing::Create(UniqueShmName("live-pidns"), 4096);
  ASSERT_TRUE(ring) << ring.error().message();
  auto rx = ring->Consumer();
  ASSERT_TRUE(rx);
  const std::string name = ring->segment().name();
  auto* shared = testing::NewShared<PidNsShared>();
  Signal ready;
  pid_t mid = 0;
  const bool started = StartInPidNamespace(
      [&]() -> int {
        std::optional<SpscProducer> keep;
        if (int rc = ProducerBody(name, "from pid 1", ready, &keep); rc != 0) {
          ready.Notify();
          return rc;
        }
        for (;;) ::pause();
      },
      ready, shared, &mid);
  if (!started) {
    testing::DeleteShared(shared);
    GTEST_SKIP() << "unshare(CLONE_NEWPID) not permitted here";
  }
  EXPECT_EQ(shared->ns_pid.load(), 1);
  auto m = rx->peek(WaitOptions::WithTimeout(10s));
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(Str(*m), "from pid 1");
  rx->release();
  // Alive: a wait times out (no kPeerDead), and the role is not taken.
  m = rx->peek(WaitOptions::WithTimeout(200ms));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error(), RingErrc::kTimedOut) << m.error().message();
  EXPECT_EQ(ring->Producer().error(), RingErrc::kRoleTaken);
  ::kill(shared->holder.load(), SIGKILL);
  EXPECT_EQ(testing::WaitChild(mid), 0);  // it reaped the holder
  m = rx->peek(WaitOptions::WithTimeout(10s));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error(), RingErrc::kPeerDead) << m.error().message();
  EXPECT_TRUE(ring->Producer());
  testing::DeleteShared(shared);
}

TEST(SpscLiveness, ZombieLeaderProducerIsAlive) {
  auto ring = SpscRing::Create(UniqueShmName("live-zombie"), 4096);
  ASSERT_TRUE(ring) << ring.error().message();
  auto rx = ring->Consumer();
  ASSERT_TRUE(rx);
  const std::string name = ring->segment().name();
  Signal ready;
  const pid_t pid = ForkZombieLeader([&] {
    auto* keep = new std::optional<SpscProducer>();  // outlives the main thread
    if (ProducerBody(name, "from the leader", ready, keep) != 0) ::_exit(3);
  });
  ASSERT_TRUE(ready.Wait());
  ASSERT_TRUE(Eventually([&] { return ProcState(pid) == 'Z'; }));
  auto m = rx->peek(WaitOptions::WithTimeout(10s));
  ASSERT_TRUE(m) << m.error().message();
  rx->release();
  m = rx->peek(WaitOptions::WithTimeout(200ms));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error(), RingErrc::kTimedOut) << m.error().message();
  EXPECT_EQ(ring->Producer().error(), RingErrc::kRoleTaken);
  KillAndReap(pid);
  m = rx->peek(WaitOptions::WithTimeout(10s));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error(), RingErrc::kPeerDead) << m.error().message();
  EXPECT_TRUE(ring->Producer());
}

// What the checker (which cannot read /proc) saw, step by step.
struct BlindReport {
  std::atomic<int> hidden{-1};  // 1: /proc hidden, 0: not permitted here
  std::atomic<int> claim{-1};   // errno-like: 0 ok
  std::atomic<int> first{-1};   // 0: got the holder's message
  std::atomic<int> alive_wait{-1};
  std::atomic<int> alive_claim{-1};
  std::atomic<int> dead_wait{-1};
  std::atomic<int> dead_claim{-1};
};

int ErrorCode(const std::error_code& e) { return e.value(); }

// The checker hides /proc from itself, then claims (a claim needs no /proc), sees the live
// holder alive, and - after the holder is killed and NOT reaped (a zombie: kill(pid, 0)
// still finds it) - sees it dead.
TEST(SpscLiveness, CheckerWithoutProcGetsTheTruth) {
  auto ring = SpscRing::Create(UniqueShmName("live-noproc"), 4096);
  ASSERT_TRUE(ring) << ring.error().message();
  const std::string name = ring->segment().name();
  Signal holder_ready, checker_ready, holder_killed;
  const pid_t holder = ForkChild([&]() -> int {
    std::optional<SpscProducer> keep;
    if (int rc = ProducerBody(name, "hello", holder_ready, &keep); rc != 0) return rc;
    for (;;) ::pause();
  });
  ASSERT_TRUE(holder_ready.Wait());
  auto* r = testing::NewShared<BlindReport>();
  const pid_t checker = ForkChild([&]() -> int {
    r->hidden = HideProc() ? 1 : 0;
    if (r->hidden == 0) {
      checker_ready.Notify();
      return 0;
    }
    auto attached = SpscRing::Attach(name);
    if (!attached) return 2;
    auto rx = attached->Consumer();
    r->claim = rx ? 0 : ErrorCode(rx.error());
    if (!rx) {
      checker_ready.Notify();
      return 0;
    }
    auto m = rx->peek(WaitOptions::WithTimeout(10s));
    r->first = m && Str(*m) == "hello" ? 0 : 1;
    rx->release();
    m = rx->peek(WaitOptions::WithTimeout(200ms));
    r->alive_wait = m ? 0 : ErrorCode(m.error());
    auto tx = attached->Producer();
    r->alive_claim = tx ? 0 : ErrorCode(tx.error());
    checker_ready.Notify();
    if (!holder_killed.Wait()) return 3;
    m = rx->peek(WaitOptions::WithTimeout(10s));
    r->dead_wait = m ? 0 : ErrorCode(m.error());
    tx = attached->Producer();
    r->dead_claim = tx ? 0 : ErrorCode(tx.error());
    return 0;
  });
  ASSERT_TRUE(checker_ready.Wait());
  ::kill(holder, SIGKILL);
  ASSERT_TRUE(Eventually([&] { return testing::HasExited(holder); }));  // a zombie
  holder_killed.Notify();
  EXPECT_EQ(testing::WaitChildFor(checker, 30s), 0);
  EXPECT_EQ(testing::WaitChild(holder), 128 + SIGKILL);
  if (r->hidden.load() == 0) {
    testing::DeleteShared(r);
    GTEST_SKIP() << "cannot mount over /proc in a private mount namespace here";
  }
  EXPECT_EQ(r->claim.load(), 0) << std::make_error_code(std::errc(r->claim.load())).message();
  EXPECT_EQ(r->first.load(), 0);
  EXPECT_EQ(r->alive_wait.load(), static_cast<int>(RingErrc::kTimedOut));
  EXPECT_EQ(r->alive_claim.load(), static_cast<int>(RingErrc::kRoleTaken));
  EXPECT_EQ(r->dead_wait.load(), static_cast<int>(RingErrc::kPeerDead));
  EXPECT_EQ(r->dead_claim.load(), 0);
  testing::DeleteShared(r);
}

// A consumer killed inside its futex wait left data_event.waiters raised (and the word
// armed): every later commit paid a load of it, the first one a futex_wake. Its successor
// resets the count: the producer's commits make no wake call for the dead sleeper.
TEST(SpscLiveness, SuccessorOfAConsumerKilledAsleepResetsItsWait) {
  auto ring = SpscRing::Create(UniqueShmName("live-waiters-rx"), 4096);
  ASSERT_TRUE(ring) << ring.error().message();
  auto tx = ring->Producer();
  ASSERT_TRUE(tx);
  const SpscControl* ctl = RegionOf(*ring).control;
  const pid_t child = ForkChild([&]() -> int {
    auto rx = ring->Consumer();
    if (!rx) return 3;
    (void)rx->peek(WaitOptions::Sleep());  // sleeps until killed
    return 4;
  });
  ASSERT_TRUE(Eventually([&] {
    return ctl->data_event.waiters.load() == 1 && SleepsInFutex(child);
  })) << "state "
      << ProcState(child);
  KillAndReap(child);
  EXPECT_EQ(ctl->data_event.waiters.load(), 1u);  // left raised by the dead sleeper
  auto rx = ring->Consumer();
  ASSERT_TRUE(rx) << rx.error().message();
  EXPECT_EQ(ctl->data_event.waiters.load(), 0u);
  const uint64_t wakes = ctl->producer_stats.wake_calls.load();
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(tx->try_send(Bytes("m" + std::to_string(i))));
    auto m = rx->try_peek();
    ASSERT_TRUE(m);
    EXPECT_EQ(Str(*m), "m" + std::to_string(i));
    rx->release();
  }
  EXPECT_EQ(ctl->producer_stats.wake_calls.load(), wakes);
}

// The same for a producer killed while waiting for space: its successor resets
// space_event, and the consumer's releases make no wake call for it.
TEST(SpscLiveness, SuccessorOfAProducerKilledAsleepResetsItsWait) {
  auto ring = SpscRing::Create(UniqueShmName("live-waiters-tx"), 4096);
  ASSERT_TRUE(ring) << ring.error().message();
  auto rx = ring->Consumer();
  ASSERT_TRUE(rx);
  const SpscControl* ctl = RegionOf(*ring).control;
  const pid_t child = ForkChild([&]() -> int {
    auto tx = ring->Producer();
    if (!tx) return 3;
    while (tx->try_send(Bytes(std::string(100, 'f')))) {
    }
    (void)tx->reserve(100, WaitOptions::Sleep());  // full: sleeps until killed
    return 4;
  });
  ASSERT_TRUE(Eventually([&] {
    return ctl->space_event.waiters.load() == 1 && SleepsInFutex(child);
  })) << "state "
      << ProcState(child);
  KillAndReap(child);
  EXPECT_EQ(ctl->space_event.waiters.load(), 1u);
  auto tx = ring->Producer();
  ASSERT_TRUE(tx) << tx.error().message();
  EXPECT_EQ(ctl->space_event.waiters.load(), 0u);
  const uint64_t wakes = ctl->consumer_stats.wake_calls.load();
  int n = 0;
  while (rx->try_peek()) {
    rx->release();
    ++n;
  }
  EXPECT_GT(n, 10);
  EXPECT_EQ(ctl->consumer_stats.wake_calls.load(), wakes);
}

// Stale named rings are decided by the kernel too: a ring whose creator's main thread
// exited while another thread runs (a zombie in /proc) is in use, never replaced.
TEST(SpscLiveness, RingOfAZombieLeaderCreatorIsNotStale) {
  const std::string name = UniqueShmName("live-stale-zombie");
  Signal ready;
  const pid_t pid = ForkZombieLeader([&] {
    SpscRing::CreateOptions keep;
    keep.unlink = UnlinkPolicy::kKeep;
    auto ring = SpscRing::Create(name, 4096, keep);
    if (!ring) ::_exit(3);
    auto* held = new SpscRing(std::move(*ring));  // outlives the main thread
    auto tx = held->Producer();
    if (!tx) ::_exit(4);
    new SpscProducer(std::move(*tx));
    ready.Notify();
  });
  ASSERT_TRUE(ready.Wait());
  ASSERT_TRUE(Eventually([&] { return ProcState(pid) == 'Z'; }));
  auto again = SpscRing::Create(name, 8192);  // reclaim_stale
  EXPECT_FALSE(again) << "replaced the ring of a live creator";
  if (!again) EXPECT_EQ(again.error(), std::errc::file_exists);
  auto attached = SpscRing::Attach(name);
  ASSERT_TRUE(attached) << attached.error().message();
  EXPECT_EQ(attached->capacity(), 4096u);
  EXPECT_EQ(attached->Producer().error(), RingErrc::kRoleTaken);
  KillAndReap(pid);
  auto replaced = SpscRing::Create(name, 8192);  // now every holder is gone
  ASSERT_TRUE(replaced) << replaced.error().message();
  EXPECT_EQ(replaced->capacity(), 8192u);
}

// ... and a creator that exec'd holds nothing: its ring (no role held) is stale.
TEST(SpscLiveness, RingOfAnExecedCreatorIsStale) {
  const std::string name = UniqueShmName("live-stale-exec");
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t child = ForkChild([&]() -> int {
    SpscRing::CreateOptions keep;
    keep.unlink = UnlinkPolicy::kKeep;
    auto ring = SpscRing::Create(name, 4096, keep);
    if (!ring) return 3;
    ::dup2(pipefd[1], 3);
    ::execl("/bin/sh", "sh", "-c", "printf x >&3; exec sleep 60", static_cast<char*>(nullptr));
    return 4;
  });
  ::close(pipefd[1]);
  char c = 0;
  ASSERT_EQ(::read(pipefd[0], &c, 1), 1);
  ::close(pipefd[0]);
  auto replaced = SpscRing::Create(name, 8192);
  ASSERT_TRUE(replaced) << replaced.error().message();
  EXPECT_EQ(replaced->capacity(), 8192u);
  EXPECT_FALSE(testing::HasExited(child));
  KillAndReap(child);
}

// ================================================================== Connection

using transport::Client;
using transport::Connection;
using transport::Listener;
using transport::TransportErrc;

// A server child (accepts one connection on `path`, sends "hello") as a holder body.
int ServerBody(const std::string& path, const Signal& listening, const Signal& ready) {
  auto l = Listener::Create(path, kKey);
  if (!l) {
    listening.Notify();
    return 10;
  }
  listening.Notify();
  auto c = l->accept(10s);
  if (!c || !c->is_shm()) return 11;
  if (!c->send_bytes("hello")) return 12;
  new Connection(std::move(*c));  // kept open until killed
  ready.Notify();
  return 0;
}

// Connects to `path` and expects "hello" over shared memory.
std::optional<Connection> ConnectAndGreet(const std::string& path) {
  auto c = Client(path, kKey);
  EXPECT_TRUE(c) << c.error().message();
  if (!c) return std::nullopt;
  EXPECT_TRUE(c->is_shm());
  auto m = c->recv_bytes(10s);
  EXPECT_TRUE(m) << m.error().message();
  if (m) EXPECT_EQ(Str(*m), "hello");
  return std::move(*c);
}

TEST(ConnectionLiveness, ExecedPeerIsGone) {
  const std::string path = testing::UniqueSocketPath("live-exec");
  Signal listening, ready;
  const pid_t server = ForkChild([&]() -> int {
    if (int rc = ServerBody(path, listening, ready); rc != 0) return rc;
    ::execl("/bin/sh", "sh", "-c", "exec sleep 60", static_cast<char*>(nullptr));
    return 4;
  });
  ASSERT_TRUE(listening.Wait());
  auto c = ConnectAndGreet(path);
  ASSERT_TRUE(c);
  auto m = c->recv_bytes(10s);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error(), TransportErrc::kPeerDead) << m.error().message();
  EXPECT_FALSE(testing::HasExited(server));
  KillAndReap(server);
}

TEST(ConnectionLiveness, PeerInAnotherPidNamespaceAliveThenDead) {
  const std::string path = testing::UniqueSocketPath("live-pidns");
  auto* shared = testing::NewShared<PidNsShared>();
  Signal listening, ready;
  pid_t mid = 0;
  const bool started = StartInPidNamespace(
      [&]() -> int {
        if (int rc = ServerBody(path, listening, ready); rc != 0) return rc;
        for (;;) ::pause();
      },
      listening, shared, &mid);
  if (!started) {
    testing::DeleteShared(shared);
    GTEST_SKIP() << "unshare(CLONE_NEWPID) not permitted here";
  }
  auto c = ConnectAndGreet(path);
  ASSERT_TRUE(c);
  ASSERT_TRUE(ready.Wait());
  auto m = c->recv_bytes(200ms);  // alive: no kPeerDead
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error(), TransportErrc::kTimedOut) << m.error().message();
  ::kill(shared->holder.load(), SIGKILL);
  EXPECT_EQ(testing::WaitChild(mid), 0);
  m = c->recv_bytes(10s);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error(), TransportErrc::kPeerDead) << m.error().message();
  testing::DeleteShared(shared);
}

TEST(ConnectionLiveness, ZombieLeaderPeerIsAlive) {
  const std::string path = testing::UniqueSocketPath("live-zombie");
  Signal listening, ready;
  const pid_t server = ForkZombieLeader([&] {
    if (ServerBody(path, listening, ready) != 0) ::_exit(3);
  });
  ASSERT_TRUE(listening.Wait());
  auto c = ConnectAndGreet(path);
  ASSERT_TRUE(c);
  ASSERT_TRUE(ready.Wait());
  ASSERT_TRUE(Eventually([&] { return ProcState(server) == 'Z'; }));
  auto m = c->recv_bytes(200ms);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error(), TransportErrc::kTimedOut) << m.error().message();
  KillAndReap(server);
  m = c->recv_bytes(10s);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error(), TransportErrc::kPeerDead) << m.error().message();
}

// The client connects, then hides /proc from itself: the live server is alive to it, and
// once killed (not reaped) dead.
TEST(ConnectionLiveness, CheckerWithoutProcGetsTheTruth) {
  const std::string path = testing::UniqueSocketPath("live-noproc");
  Signal listening, ready, checker_ready, killed;
  const pid_t server = ForkChild([&]() -> int {
    if (int rc = ServerBody(path, listening, ready); rc != 0) return rc;
    for (;;) ::pause();
  });
  ASSERT_TRUE(listening.Wait());
  auto* r = testing::NewShared<BlindReport>();
  const pid_t checker = ForkChild([&]() -> int {
    auto c = Client(path, kKey);
    if (!c || !c->is_shm()) return 2;
    auto m = c->recv_bytes(10s);
    r->first = m && Str(*m) == "hello" ? 0 : 1;
    r->hidden = HideProc() ? 1 : 0;
    m = c->recv_bytes(200ms);
    r->alive_wait = m ? 0 : ErrorCode(m.error());
    checker_ready.Notify();
    if (!killed.Wait()) return 3;
    m = c->recv_bytes(10s);
    r->dead_wait = m ? 0 : ErrorCode(m.error());
    return 0;
  });
  ASSERT_TRUE(checker_ready.Wait());
  ::kill(server, SIGKILL);
  ASSERT_TRUE(Eventually([&] { return testing::HasExited(server); }));
  killed.Notify();
  EXPECT_EQ(testing::WaitChildFor(checker, 30s), 0);
  EXPECT_EQ(testing::WaitChild(server), 128 + SIGKILL);
  if (r->hidden.load() == 0) {
    testing::DeleteShared(r);
    GTEST_SKIP() << "cannot mount over /proc in a private mount namespace here";
  }
  EXPECT_EQ(r->first.load(), 0);
  EXPECT_EQ(r->alive_wait.load(), static_cast<int>(TransportErrc::kTimedOut));
  EXPECT_EQ(r->dead_wait.load(), static_cast<int>(TransportErrc::kPeerDead));
  testing::DeleteShared(r);
}

// A reader that armed fileno() and died (its socket kept open by a process that inherited
// it, so doorbells still go through) used to get a doorbell - a send(2) - with every
// commit. The writer now finds the reader's lock gone and takes its bias off.
TEST(ConnectionLiveness, DeadArmedReaderCostsNoDoorbellPerCommit) {
  const std::string path = testing::UniqueSocketPath("live-bell");
  auto l = Listener::Create(path, kKey);
  ASSERT_TRUE(l) << l.error().message();
  auto* keeper = testing::NewShared<std::atomic<pid_t>>();
  Signal ready;
  const pid_t reader = ForkChild([&]() -> int {
    auto c = Client(path, kKey);
    if (!c || !c->is_shm()) return 2;
    auto armed = c->arm_fileno();
    if (!armed || *armed) return 3;  // nothing pending: armed
    const pid_t k = ::fork();        // keeps the socket open, holds no role
    if (k == 0) {
      keeper->store(::getpid());  // runs after the atfork handler closed our lock tokens
      for (;;) ::pause();
    }
    // Until then the keeper's copies of the tokens still count (late, never wrong).
    while (keeper->load() != k) ::usleep(100);
    ready.Notify();
    for (;;) ::pause();
  });
  auto server = l->accept(10s);
  ASSERT_TRUE(server) << server.error().message();
  ASSERT_TRUE(server->is_shm());
  ASSERT_TRUE(ready.Wait());
  KillAndReap(reader);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(server->send_bytes("m" + std::to_string(i)));
  EXPECT_EQ(server->stats().doorbells_sent, 0u);
  ::kill(keeper->load(), SIGKILL);
  testing::DeleteShared(keeper);
}

// A TCP listener sweeps /dev/shm/shmlink-conn-* segments of listeners that died
// mid-handshake. One whose creator lives (here its main thread exited, another runs: a
// zombie to /proc) is left alone; once it is killed, the segment is swept.
TEST(ConnectionLiveness, SweepKeepsALiveCreatorsSegment) {
  const std::string name = "/shmlink-conn-" + testing::UniqueSuffix() + "-sweeptest";
  Signal ready;
  const pid_t pid = ForkZombieLeader([&] {
    auto size = SpscSegmentSize(2, 4096);
    auto seg = Segment::Create(name, *size, UnlinkPolicy::kKeep, 0600);
    if (!seg) ::_exit(3);
    auto lock = HolderLock::Acquire(*seg, kCreatorHolderSlot);
    if (!lock) ::_exit(4);
    new HolderLock(std::move(*lock));
    InitSpscSegment(*seg, SegmentKind::kConnection, 2, 4096);
    new Segment(std::move(*seg));
    ready.Notify();
  });
  ASSERT_TRUE(ready.Wait());
  ASSERT_TRUE(Eventually([&] { return ProcState(pid) == 'Z'; }));
  {
    auto l = Listener::Create("127.0.0.1:0", kKey);  // sweeps
    ASSERT_TRUE(l) << l.error().message();
  }
  EXPECT_TRUE(testing::ShmExists(name)) << "swept the segment of a live creator";
  KillAndReap(pid);
  {
    auto l = Listener::Create("127.0.0.1:0", kKey);
    ASSERT_TRUE(l) << l.error().message();
  }
  EXPECT_FALSE(testing::ShmExists(name)) << "a dead creator's segment was left";
  ::shm_unlink(name.c_str());
}

}  // namespace
}  // namespace shmlink
