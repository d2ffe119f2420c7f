// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Crash scenario for transport::Listener / Client / Connection: a listener process and a
// client process, messages in one direction (either), one of them SIGKILLed - during the
// handshake (authentication + shm upgrade), while sending or receiving, or in close().
// Variants: Unix socket (ring segment passed as a sealed memfd) and TCP on 127.0.0.1 (named
// ring segment, unlinked once both sides mapped it). Semantics checked (connection.h):
//
//  Sender killed: every message whose send_bytes() returned is received exactly once, in
//    order; then recv returns kPeerDead (kClosed if the kill came after close()).
//  Receiver killed: the sender's next blocking send returns an error (kPeerDead, kClosed,
//    EPIPE/ECONNRESET on the socket path) instead of hanging; nothing is redelivered.
//  Killed during the handshake: the survivor's accept()/Client() fails with a typed error
//    within the handshake timeout; a surviving listener accepts the next client normally
//    (a replacement client, started by the parent).
//  Successors: a connection has no second receiver, so a stream does not continue after
//    a kill. What continues is the service: after a listener is killed, a successor
//    listener process takes its address over (the dead one's socket file is replaced) and
//    a new client transfers a whole stream through it, exactly once, in order.
//  Files: the listener's socket file is removed by close(); a dead listener's file is
//    replaced by the next Listener::Create on that path (then closed here). No
//    /dev/shm/shmlink-conn-<listener pid>-* segment may remain.
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "tests/reliability/crash_scenario.h"
#include "tests/test_util.h"

#include <shmlink/connection.h>
#include <shmlink/process_identity.h>

namespace shmlink::reliability {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using transport::Address;
using transport::Connection;
using transport::ConnectionOptions;
using transport::Listener;
using transport::TransportErrc;

constexpr uint32_t kMaxMessages = 4096;
constexpr char kAuthKey[] = "crash-stress key";

enum Phase : uint32_t {
  kStart = 0,
  kListen,
  kHandshake,  // inside accept() / Client()
  kSend,       // inside send_bytes()
  kSent,       // send_bytes() returned, ledger not yet updated
  kRecv,       // inside recv_bytes()
  kProcess,    // received, being logged
  kClose,      // inside close()
  kClosed,     // close() returned
  kDone,
  kPhaseCount
};
const char* const kPhaseNames[kPhaseCount] = {"start",       "listen", "handshake", "send",
                                              "after_send",  "recv",   "process",   "close",
                                              "after_close", "done"};

enum Side { kServer = 0, kClient = 1 };

struct Plan {
  bool tcp = false;
  bool shm = true;  // enable_shm (false: socket data path both sides)
  Side sender = kClient;
  Side victim = kServer;
  KillMethod kill = KillMethod::kNone;
  Phase self_phase = kSent;  // kSelf
  uint32_t self_at = 0;
  bool in_handshake = false;  // kAsync: time the kill from the handshake start
  double delay_fraction = 0;  // kAsync: of the typical transfer time
  microseconds handshake_delay{0};
  uint32_t messages = 500;
  size_t max_size = 256;
  uint64_t ring = 1 << 14;
};

struct Ledger {
  std::atomic<uint32_t> phase[2];
  std::atomic<uint32_t> port;  // TCP: the listener's port (0: not yet)
  std::atomic<uint32_t> listening;
  std::atomic<uint32_t> accepted;        // server: a connection completed its handshake
  std::atomic<uint32_t> connected;       // client: Client() returned a connection
  std::atomic<uint32_t> failed_accepts;  // server: accept() errors (handshake failures)
  std::atomic<uint32_t> accept_returns;  // server: accept() calls that returned
  std::atomic<uint32_t> sent;            // send_bytes() returned for [0, sent)
  std::atomic<uint32_t> sender_closed;
  std::atomic<uint32_t> is_shm[2];
  std::atomic<int64_t> xfer_start;
  std::atomic<int64_t> xfer_end;
  std::atomic<int64_t> hs_start[2];
  std::atomic<uint32_t> misordered;
  std::atomic<uint32_t> corrupt;
  std::atomic<uint32_t> deliveries[kMaxMessages];
};

void SetPhase(Ledger* l, Side s, Phase p) {
  // Relaxed: read by the parent after the writer died or exited (see spsc scenario).
  l->phase[s].store(p, std::memory_order_relaxed);
}

enum Exit : int {
  kExitOk = 0,         // sender: sent all and closed; receiver: got kClosed
  kExitPeerGone = 1,   // the peer died/closed early: an error the semantics allow
  kExitHandshake = 2,  // accept()/Client() failed because the peer died in the handshake
  kExitNoPeer = 3,     // client: no listener to connect to (it died first)
  kExitHang = 10,
  kExitError = 11,
};

bool PeerGone(const std::error_code& e) {
  return e == TransportErrc::kPeerDead || e == TransportErrc::kClosed ||
         e == std::errc::broken_pipe || e == std::errc::connection_reset;
}

struct Runner {
  const Plan& p;
  Ledger* l;
  Side me;
  bool armed;
  Clock::time_point deadline;
  std::chrono::milliseconds wait_bound;

  void Die(Phase phase, uint64_t seq) const {
    if (armed && p.victim == me && p.kill == KillMethod::kSelf && phase == p.self_phase &&
        seq >= p.self_at) {
      ::raise(SIGKILL);
    }
  }

  // Sends or receives the stream on an established connection.
  int Transfer(Connection& conn) {
    l->is_shm[me].store(conn.is_shm() ? 1 : 0);
    std::mt19937_64 rng(p.messages * 7919 + me);
    if (p.sender == me) {
      l->xfer_start.store(NowNs());
      std::vector<std::byte> buf;
      for (uint32_t seq = 0; seq < p.messages; ++seq) {
        const size_t n = kSeqMessageMin +
                         (rng() % 8 == 0 ? rng() % (p.max_size - kSeqMessageMin + 1) : rng() % 48);
        buf.resize(n);
        WriteSeqMessage(buf, seq);
        SetPhase(l, me, kSend);
        auto r = conn.send_bytes(buf);
        if (!r) return PeerGone(r.error()) ? kExitPeerGone : kExitError;
        SetPhase(l, me, kSent);
        Die(kSent, seq);
        l->sent.store(seq + 1, std::memory_order_relaxed);
      }
      l->xfer_end.store(NowNs());
      SetPhase(l, me, kClose);
      conn.close();
      SetPhase(l, me, kClosed);
      l->sender_closed.store(1);
      Die(kClosed, p.messages);
      return kExitOk;
    }
    int64_t last = -1;
    for (;;) {
      SetPhase(l, me, kRecv);
      auto m = conn.recv_bytes(std::chrono::milliseconds(200));
      if (!m) {
        const auto e = m.error();
        if (e == TransportErrc::kTimedOut) {
          if (Clock::now() < deadline) continue;
          return kExitHang;
        }
        SetPhase(l, me, kClose);
        conn.close();
        SetPhase(l, me, kDone);
        if (e == TransportErrc::kClosed) return kExitOk;
        if (e == TransportErrc::kPeerDead) return kExitPeerGone;
        std::fprintf(stderr, "conn: recv: %s\n", e.message().c_str());
        return kExitError;
      }
      deadline = Clock::now() + wait_bound;  // a hang is no progress for wait_bound
      SetPhase(l, me, kProcess);
      const int64_t seq = ReadSeqMessage(*m, kMaxMessages);
      if (seq < 0) {
        l->corrupt.fetch_add(1);
        return kExitError;
      }
      if (seq != last + 1) l->misordered.fetch_add(1);
      last = seq;
      l->deliveries[seq].fetch_add(1, std::memory_order_relaxed);
      Die(kProcess, static_cast<uint64_t>(seq));
    }
  }
};

ConnectionOptions Options(const Plan& p) {
  ConnectionOptions o;
  o.enable_shm = p.shm;
  o.ring_capacity = p.ring;
  // Only a true hang hits this: a killed peer ends the handshake at once with EOF.
  o.handshake_timeout = milliseconds(8000);
  o.wait.liveness_check = milliseconds(5);
  return o;
}

int ServerMain(const Plan& p, Ledger* l, const Address& addr, const TrialOptions& o) {
  Runner run{p, l, kServer, true, Clock::now() + o.wait_bound, o.wait_bound};
  if (p.victim == kServer && p.kill == KillMethod::kCpuTimer) ArmCpuKillTimer(p.handshake_delay);
  SetPhase(l, kServer, kListen);
  transport::ListenerOptions lo;
  lo.connection = Options(p);
  auto listener = Listener::Create(addr, kAuthKey, lo);
  if (!listener) {
    std::fprintf(stderr, "conn: listen: %s\n", listener.error().message().c_str());
    return kExitError;
  }
  l->port.store(listener->address().port);
  l->listening.store(1);
  // Accept until one client completes the handshake (a client killed in the handshake
  // is replaced by the parent), each accept bounded.
  for (;;) {
    SetPhase(l, kServer, kHandshake);
    l->hs_start[kServer].store(NowNs());
    auto conn = listener->accept(milliseconds(500));
    if (conn) l->accepted.store(1);
    l->accept_returns.fetch_add(1);
    if (conn) {
      const int rc = run.Transfer(*conn);
      listener->close();
      return rc;
    }
    const auto e = conn.error();
    if (e != TransportErrc::kTimedOut) {
      l->failed_accepts.fetch_add(1);
      run.deadline = Clock::now() + o.wait_bound;  // a client came (and failed): progress
    }
    if (Clock::now() >= run.deadline) return kExitHang;
  }
}

int ClientMain(const Plan& p, Ledger* l, const Address& addr, int incarnation, pid_t server,
               const TrialOptions& o) {
  Runner run{p, l, kClient, incarnation == 0, Clock::now() + o.wait_bound, o.wait_bound};
  if (run.armed && p.victim == kClient && p.kill == KillMethod::kCpuTimer) {
    ArmCpuKillTimer(p.handshake_delay);
  }
  auto server_dead = [&] { return IdentityOf(server).start_ticks == 0; };
  Address target = addr;
  for (;;) {  // wait for the listener (bounded)
    if (l->listening.load()) break;
    if (server_dead()) return kExitNoPeer;
    if (Clock::now() >= run.deadline) return kExitHang;
    ::usleep(200);
  }
  if (target.family == transport::AddressFamily::kTcp)
    target.port = static_cast<uint16_t>(l->port.load());
  SetPhase(l, kClient, kHandshake);
  l->hs_start[kClient].store(NowNs());
  auto conn = transport::Client(target, kAuthKey, Options(p));
  if (!conn) {
    const auto e = conn.error();
    if (server_dead() || e == std::errc::connection_refused ||
        e == std::errc::no_such_file_or_directory) {
      return kExitNoPeer;
    }
    if (PeerGone(e) || e == TransportErrc::kHandshakeTimeout) return kExitHandshake;
    std::fprintf(stderr, "conn: client: %s\n", e.message().c_str());
    return kExitError;
  }
  l->connected.store(1);
  return run.Transfer(*conn);
}

Plan MakePlan(std::mt19937_64& rng) {
  Plan p;
  p.tcp = rng() % 3 == 0;
  p.shm = rng() % 5 != 0;
  p.sender = rng() % 2 ? kClient : kServer;
  p.victim = rng() % 2 ? kClient : kServer;
  const uint64_t k = rng() % 20;
  p.kill = k < 7    ? KillMethod::kSelf
           : k < 17 ? KillMethod::kAsync
           : k < 19 ? KillMethod::kCpuTimer
                    : KillMethod::kNone;
  p.messages = 50 + static_cast<uint32_t>(rng() % 3000);
  p.ring = uint64_t{1} << (12 + rng() % 5);  // 4 KiB .. 64 KiB
  p.max_size = std::min<size_t>(p.ring / 2 - 8, 2048);
  const bool victim_sends = p.victim == p.sender;
  static constexpr Phase kSenderPoints[] = {kSent, kClosed};
  p.self_phase = victim_sends ? kSenderPoints[rng() % 2] : kProcess;
  p.self_at = static_cast<uint32_t>(rng() % p.messages);
  p.in_handshake = rng() % 2 == 0;
  p.delay_fraction = static_cast<double>(rng() % 1000) / 1000.0;
  p.handshake_delay = microseconds(rng() % 400);
  return p;
}

bool PathExists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// /dev/shm/shmlink-conn-<pid>-* files (named ring segments of a TCP listener `pid`).
int CountConnSegments(pid_t pid, bool remove) {
  const auto files = testing::ShmFiles("shmlink-conn-" + std::to_string(pid) + "-");
  if (remove) {
    for (const std::string& f : files) ::shm_unlink(("/" + f).c_str());
  }
  return static_cast<int>(files.size());
}

class ConnScenario final : public CrashScenario {
 public:
  std::string name() const override { return "connection"; }

  TrialCounts RunTrial(const TrialOptions& o) override {
    std::mt19937_64 rng(o.seed);
    const Plan p = MakePlan(rng);
    TrialCounts c;
    const std::string sock = testing::UniqueSocketPath("crash");
    const Address addr = p.tcp ? Address::Tcp("127.0.0.1", 0) : Address::UnixPath(sock);
    Ledger* l = testing::NewShared<Ledger>();
    const auto trial_deadline = Clock::now() + o.deadline;

    const pid_t server = testing::ForkChild([&] { return ServerMain(p, l, addr, o); });
    const pid_t client = testing::ForkChild([&] { return ClientMain(p, l, addr, 0, server, o); });
    const pid_t victim = p.victim == kServer ? server : client;
    if (p.kill == KillMethod::kAsync) {
      // Wait for the handshake (or the transfer) to start, bounded; then a random delay.
      AwaitOrExit(victim, std::chrono::seconds(5), [&] {
        return p.in_handshake ? l->hs_start[p.victim].load() != 0 : l->xfer_start.load() != 0;
      });
      std::this_thread::sleep_for(
          p.in_handshake ? p.handshake_delay
                         : microseconds(static_cast<int64_t>(p.delay_fraction * xfer_us_)));
      ::kill(victim, SIGKILL);
    }
    const int victim_status = WaitOrCountHang(victim, trial_deadline, c);
    const bool killed = KilledBySigkill(victim_status);
    const char* const victim_phase = PhaseName(kPhaseNames, l->phase[p.victim].load());
    if (killed) {
      c.kills++;
      c.kill_phases[std::string(p.victim == kServer ? "listener:" : "client:") + victim_phase]++;
    }
    // A client killed before its connection existed is replaced: the listener must serve
    // the next client normally.
    pid_t replacement = -1;
    if (p.victim == kClient && killed && l->connected.load() == 0) {
      // Let the listener finish judging the dead client's handshake first: wait until one
      // more of its accept() calls (each bounded by 500 ms) has returned.
      const uint32_t returns = l->accept_returns.load();
      AwaitOrExit(
          server, std::chrono::seconds(10), [&] { return l->accept_returns.load() != returns; },
          std::chrono::microseconds(500));
    }
    if (p.victim == kClient && killed && l->connected.load() == 0 && l->accepted.load() == 0) {
      replacement = testing::ForkChild([&] { return ClientMain(p, l, addr, 1, server, o); });
    }
    const pid_t other = p.victim == kServer ? client : server;
    const int other_status = WaitOrCountHang(other, trial_deadline, c);
    const int repl_status = replacement > 0 ? WaitOrCountHang(replacement, trial_deadline, c) : 0;
    if (!killed && victim_status != -1) Learn(l);

    // ---- exit statuses
    auto check = [&](const char* who, int st, bool peer_killed) {
      if (st == -1) return;  // already counted as a hang
      const int e = testing::ExitCodeOf(st);
      bool ok = e == kExitOk;
      if (peer_killed) {
        ok = e == kExitOk || e == kExitPeerGone || e == kExitHandshake || e == kExitNoPeer;
      }
      if (!ok) {
        std::fprintf(stderr, "conn: %s exit %d (victim %s, %s, phase %s, tcp %d shm %d)\n", who, e,
                     p.victim == kServer ? "listener" : "client", KillMethodName(p.kill),
                     victim_phase, p.tcp, p.shm);
        (e == kExitHang ? c.hangs : c.errors)++;
      }
    };
    if (p.victim == kServer) {
      check("client", other_status, killed);
    } else {
      // With a replacement, the listener served it: it must end normally.
      check("listener", other_status, killed && replacement < 0);
      if (replacement > 0) check("replacement client", repl_status, false);
    }

    // ---- message accounting (one data-carrying connection at most)
    const uint32_t sent = l->sent.load();
    const bool sender_killed = killed && p.victim == p.sender;
    const bool receiver_killed = killed && p.victim != p.sender;
    const uint32_t must_have = sender_killed || receiver_killed ? sent : p.messages;
    for (uint32_t s = 0; s < kMaxMessages; ++s) {
      const uint32_t d = l->deliveries[s].load();
      c.messages += d;
      // A killed receiver cannot be asked for what it had received: skip loss there.
      if (!receiver_killed && s < must_have && d == 0) c.lost++;
      if (d > 1) c.duplicated += d - 1;
      if (d > 0 && s >= p.messages) c.corrupt++;
    }
    c.misordered += l->misordered.load();
    c.corrupt += l->corrupt.load();

    if (replacement > 0 && l->connected.load() != 0) c.takeovers++;

    // ---- a killed listener's successor serves a new client on the same address
    pid_t server2 = -1;
    if (p.victim == kServer && killed) {
      Ledger* l2 = testing::NewShared<Ledger>();
      Plan p2 = p;
      p2.kill = KillMethod::kNone;
      server2 = testing::ForkChild([&] { return ServerMain(p2, l2, addr, o); });
      const pid_t client2 =
          testing::ForkChild([&] { return ClientMain(p2, l2, addr, 0, server2, o); });
      const int s2 = WaitOrCountHang(server2, trial_deadline, c);
      const int c2 = WaitOrCountHang(client2, trial_deadline, c);
      for (const int st : {s2, c2}) {
        if (st != -1 && testing::ExitCodeOf(st) != kExitOk) {
          std::fprintf(stderr, "conn: successor %s exit %d (tcp %d shm %d, seed %llu)\n",
                       st == s2 ? "listener" : "client", testing::ExitCodeOf(st), p.tcp, p.shm,
                       (unsigned long long)o.seed);
          (testing::ExitCodeOf(st) == kExitHang ? c.hangs : c.errors)++;
        }
      }
      if (s2 != -1 && testing::ExitCodeOf(s2) == kExitOk) c.takeovers++;
      for (uint32_t s = 0; s < kMaxMessages; ++s) {
        const uint32_t d = l2->deliveries[s].load();
        c.messages += d;
        if (s < p.messages && d == 0) c.lost++;
        if (d > 1) c.duplicated += d - 1;
        if (d > 0 && s >= p.messages) c.corrupt++;
      }
      c.misordered += l2->misordered.load();
      c.corrupt += l2->corrupt.load();
      testing::DeleteShared(l2);
    }

    // ---- files
    if (!p.tcp && PathExists(sock)) {
      if (p.victim == kServer && killed) {
        // Documented recovery: the next Listener on the path replaces a dead one's file.
        auto again = Listener::Create(Address::UnixPath(sock), kAuthKey);
        if (again) {
          again->close();
        } else {
          std::fprintf(stderr, "conn: stale socket not replaced: %s\n",
                       again.error().message().c_str());
        }
      }
      if (PathExists(sock)) {
        c.leaked++;
        ::unlink(sock.c_str());
      }
    }
    if (p.tcp) {
      if (p.victim == kServer && killed && CountConnSegments(server, false) > 0) {
        // Documented recovery: a listener killed mid-handshake can leave its connection's
        // named segment; the next TCP Listener::Create on the host removes it.
        c.kill_phases["listener:segment_swept_by_next_listener"]++;
        if (auto next = Listener::Create(Address::Tcp("127.0.0.1", 0), kAuthKey)) next->close();
      }
      int segs = CountConnSegments(server, true);
      if (server2 > 0) segs += CountConnSegments(server2, true);
      if (segs > 0) {
        std::fprintf(stderr,
                     "conn: %d ring segment(s) of listener %d left in /dev/shm (phase %s)\n", segs,
                     server, victim_phase);
        c.leaked += segs;
      }
    }
    if (o.verbose) {
      std::fprintf(
          stderr,
          "conn seed=%llu tcp=%d shm=%d sender=%s victim=%s kill=%s hs=%d killed=%d "
          "phase=%s n=%u sent=%u delivered=%llu\n",
          (unsigned long long)o.seed, p.tcp, p.shm, p.sender == kServer ? "listener" : "client",
          p.victim == kServer ? "listener" : "client", KillMethodName(p.kill), p.in_handshake,
          killed, victim_phase, p.messages, sent, (unsigned long long)c.messages);
    }
    testing::DeleteShared(l);
    return c;
  }

 private:
  double xfer_us_ = 3000;  // typical transfer time (moving average)
  void Learn(Ledger* l) {
    const int64_t a = l->xfer_start.load(), b = l->xfer_end.load();
    if (a > 0 && b > a) xfer_us_ = 0.8 * xfer_us_ + 0.2 * ((b - a) / 1000.0);
  }
};

}  // namespace

std::unique_ptr<CrashScenario> MakeConnectionScenario() { return std::make_unique<ConnScenario>(); }

}  // namespace shmlink::reliability
