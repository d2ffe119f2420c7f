// Copyright shmlink authors. SPDX-License-Identifier: MIT
// Listener/Client/Connection between real processes over real sockets and shared memory:
// shm upgrade on every address family, socket fallback, end of stream, wrong keys,
// SIGKILL mid-handshake and mid-transfer, timeouts, malformed frames, 256 clients,
// socket-file hygiene and uid checks.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"
#include "tests/transport/transport_test_util.h"

#include <shmlink/connection.h>

namespace shmlink::transport {
namespace {

using namespace std::chrono_literals;
using shmlink::testing::ForkChild;
using shmlink::testing::Str;
using shmlink::testing::WaitChild;

constexpr std::string_view kKey = "secret password";

// Names of connection segments this (server) process creates for TCP clients; other
// processes' files in the shared /dev/shm are none of our business.
std::string OurSegmentPrefix() { return "shmlink-conn-" + std::to_string(::getpid()) + "-"; }

constexpr int kMessages = testing::kSanitized ? 2000 : 5000;

// Child side of the echo tests: connects, echoes every message until "close", then
// closes. Exit codes name the failure.
int EchoClient(const std::string& address, bool expect_shm, ConnectionOptions opts = {}) {
  auto c = Client(address, kKey, opts);
  if (!c) return 10;
  if (c->is_shm() != expect_shm) return 11;
  for (;;) {
    auto m = c->recv_bytes();
    if (!m) return 12;
    if (Str(*m) == "close") break;
    if (!c->send_bytes(*m)) return 13;
  }
  if (c->stats().socket_frames_sent != (expect_shm ? 0u : c->stats().socket_frames_sent)) return 14;
  c->close();
  return 0;
}

void ExpectEcho(Connection& conn, int count) {
  for (int i = 0; i < count; ++i) {
    std::string msg = "message " + std::to_string(i) + std::string(i % 200, 'x');
    ASSERT_TRUE(conn.send_bytes(msg));
    auto back = conn.recv_bytes();
    ASSERT_TRUE(back) << back.error().message();
    ASSERT_EQ(Str(*back), msg);
  }
  ASSERT_TRUE(conn.send_bytes("close"));
}

// A listener on `address` whose connections upgrade to shared memory or not.
Expected<Listener> ListenWithShm(const std::string& address, bool shm) {
  ListenerOptions lo;
  lo.connection.enable_shm = shm;
  return Listener::Create(address, kKey, lo);
}

// A listener on `address` whose connections get rings of `capacity` bytes (small ones fill
// up soon).
Expected<Listener> ListenWithRing(const std::string& address, uint64_t capacity) {
  ListenerOptions lo;
  lo.connection.ring_capacity = capacity;
  return Listener::Create(address, kKey, lo);
}

// Forks a child that connects to `address` and returns `then(connection)` (10 if it cannot
// connect).
template <typename Then>
pid_t ForkClient(const std::string& address, Then then) {
  return ForkChild([&] {
    auto c = Client(address, kKey);
    if (!c) return 10;
    return then(*c);
  });
}

// The listener (still) serves: a shmlink client forked now gets a `count`-message echo
// session over shared memory.
void ExpectServesAnEchoClient(Listener& listener, const std::string& address, int count) {
  pid_t ok = ForkChild([&] { return EchoClient(address, true); });
  auto good = listener.accept(10s);
  ASSERT_TRUE(good) << good.error().message();
  ExpectEcho(*good, count);
  EXPECT_EQ(WaitChild(ok), 0);
}

// SIGKILLs `pid` from another thread after `delay`, while this one blocks in a call under
// test; join the returned thread. `killed_at` (optional) receives the time of the kill.
std::thread KillAfter(pid_t pid, std::chrono::milliseconds delay,
                      std::chrono::steady_clock::time_point* killed_at = nullptr) {
  return std::thread([=] {
    std::this_thread::sleep_for(delay);
    if (killed_at != nullptr) *killed_at = std::chrono::steady_clock::now();
    ::kill(pid, SIGKILL);
  });
}

// The sockaddr of an abstract address "@name", and its length.
socklen_t AbstractSockaddr(const std::string& address, sockaddr_un* un) {
  *un = {};
  un->sun_family = AF_UNIX;
  std::memcpy(un->sun_path + 1, address.data() + 1, address.size() - 1);
  return offsetof(sockaddr_un, sun_path) + address.size();
}

class ShmEcho : public ::testing::TestWithParam<std::string> {};

TEST_P(ShmEcho, TwoShmlinkPeersUseSharedMemory) {
  std::string address = GetParam() == "path"       ? testing::UniqueSocketPath()
                        : GetParam() == "abstract" ? testing::UniqueAbstract()
                                                   : std::string("localhost:0");
  auto listener = Listener::Create(address, kKey);
  ASSERT_TRUE(listener) << listener.error().message();
  const std::string bound = listener->address().ToString();
  const auto shm_before = testing::ShmFiles(OurSegmentPrefix());
  pid_t child = ForkChild([&] { return EchoClient(bound, true); });
  auto conn = listener->accept(10s);
  ASSERT_TRUE(conn) << conn.error().message();
  EXPECT_TRUE(conn->is_shm());
  EXPECT_TRUE(conn->peer_is_shmlink());
  if (GetParam() != "tcp") {
    EXPECT_EQ(listener->last_accepted().pid, child);
  }
  EXPECT_EQ(listener->last_accepted().uid, ::geteuid());  // TCP: from /proc/net/tcp
  // The TCP segment name is unlinked as soon as both sides mapped it.
  EXPECT_EQ(testing::ShmFiles(OurSegmentPrefix()), shm_before);
  ExpectEcho(*conn, kMessages);
  // The data path is the ring: not one data frame crossed the socket.
  EXPECT_EQ(conn->stats().socket_frames_sent, 0u);
  EXPECT_EQ(conn->stats().socket_frames_received, 0u);
  // The child closes after "close": we see the end of stream.
  auto end = conn->recv_bytes(5s);
  EXPECT_EQ(end.error(), make_error_code(TransportErrc::kClosed)) << end.error().message();
  EXPECT_EQ(WaitChild(child), 0);
}

INSTANTIATE_TEST_SUITE_P(Families, ShmEcho, ::testing::Values("path", "abstract", "tcp"));

TEST(Connection, SocketPathWhenShmIsDisabledOnEitherSide) {
  for (bool server_shm : {false, true}) {
    const std::string address = testing::UniqueAbstract();
    auto listener = ListenWithShm(address, server_shm);
    ASSERT_TRUE(listener);
    ConnectionOptions co;
    co.enable_shm = !server_shm;
    pid_t child = ForkChild([&] { return EchoClient(address, false, co); });
    auto conn = listener->accept(10s);
    ASSERT_TRUE(conn) << conn.error().message();
    EXPECT_FALSE(conn->is_shm());
    ExpectEcho(*conn, 500);
    EXPECT_EQ(conn->stats().socket_frames_sent, 501u);
    EXPECT_EQ(conn->recv_bytes(5s).error(), make_error_code(TransportErrc::kClosed));
    EXPECT_EQ(WaitChild(child), 0);
  }
}

// authenticate = false: no handshake at all (Python's authkey=None), socket data path;
// a key in that mode, or no key with authentication, is kInvalidArgument.
TEST(Connection, UnauthenticatedPeersTalkOnTheSocket) {
  ConnectionOptions none;
  none.authenticate = false;
  ListenerOptions lo;
  lo.connection = none;
  EXPECT_EQ(Listener::Create(testing::UniqueAbstract(), kKey, lo).error(),
            make_error_code(TransportErrc::kInvalidArgument));
  EXPECT_EQ(Listener::Create(testing::UniqueAbstract(), "").error(),
            make_error_code(TransportErrc::kInvalidArgument));
  EXPECT_EQ(Client(testing::UniqueAbstract(), kKey, none).error(),
            make_error_code(TransportErrc::kInvalidArgument));
  for (std::string address : {testing::UniqueAbstract(), std::string("127.0.0.1:0")}) {
    auto listener = Listener::Create(address, "", lo);
    ASSERT_TRUE(listener) << listener.error().message();
    address = listener->address().ToString();
    pid_t child = ForkChild([&] {
      auto c = Client(address, "", none);
      if (!c) return 10;
      if (c->is_shm() || c->peer_is_shmlink()) return 11;
      for (;;) {
        auto m = c->recv_bytes();
        if (!m) return 12;
        if (Str(*m) == "close") break;
        if (!c->send_bytes(*m)) return 13;
      }
      return 0;
    });
    auto conn = listener->accept(10s);
    ASSERT_TRUE(conn) << conn.error().message();
    EXPECT_FALSE(conn->is_shm());
    ExpectEcho(*conn, 50);
    EXPECT_EQ(WaitChild(child), 0);
  }
}

// send_handle/recv_handle on both data paths: the fd arrives in order with the messages
// and refers to the same open file; a message is not a handle and vice versa.
TEST(Connection, PassesDescriptorsInOrderOnBothPaths) {
  for (bool shm : {true, false}) {
    const std::string address = testing::UniqueAbstract();
    auto listener = ListenWithShm(address, shm);
    ASSERT_TRUE(listener);
    pid_t child = ForkClient(address, [](Connection& c) {
      int p[2];
      if (::pipe(p) != 0) return 20;
      if (!c.send_bytes("before")) return 21;
      if (!c.send_handle(p[1])) return 22;
      ::close(p[1]);
      if (!c.send_bytes("after")) return 23;
      char ch = 0;
      if (::read(p[0], &ch, 1) != 1 || ch != 'x') return 24;  // written by the parent
      auto back = c.recv_handle(10s);
      if (!back) return 25;
      ::close(*back);
      c.close();
      return 0;
    });
    auto conn = listener->accept(10s);
    ASSERT_TRUE(conn) << conn.error().message();
    EXPECT_EQ(conn->is_shm(), shm);
    EXPECT_EQ(conn->recv_handle(5s).error(), make_error_code(TransportErrc::kProtocolError));
    auto before = conn->recv_bytes(5s);
    ASSERT_TRUE(before);
    EXPECT_EQ(Str(*before), "before");
    auto fd = conn->recv_handle(5s);
    ASSERT_TRUE(fd) << fd.error().message() << (shm ? " (shm)" : " (socket)");
    ASSERT_EQ(::write(*fd, "x", 1), 1);
    ::close(*fd);
    auto after = conn->recv_bytes(5s);
    ASSERT_TRUE(after);
    EXPECT_EQ(Str(*after), "after");
    ASSERT_TRUE(conn->send_handle(0));
    EXPECT_EQ(WaitChild(child), 0);
  }
  auto tcp = Listener::Create("127.0.0.1:0", kKey);
  ASSERT_TRUE(tcp);
  pid_t child = ForkClient(tcp->address().ToString(), [](Connection& c) {
    return c.send_handle(0).error() == make_error_code(TransportErrc::kInvalidArgument) ? 0 : 1;
  });
  auto conn = tcp->accept(10s);
  ASSERT_TRUE(conn);
  EXPECT_EQ(WaitChild(child), 0);
}

// Zero-copy forms on both data paths, plus every committed message before kClosed.
TEST(Connection, ZeroCopyAndEndOfStream) {
  for (bool shm : {true, false}) {
    const std::string address = testing::UniqueAbstract();
    auto listener = ListenWithShm(address, shm);
    ASSERT_TRUE(listener);
    pid_t child = ForkClient(address, [&](Connection& c) {
      for (int i = 0; i < 1000; ++i) {
        auto buf = c.reserve(sizeof(int));
        if (!buf) return 11;
        std::memcpy(buf->data(), &i, sizeof(int));
        if (!c.commit()) return 12;
      }
      c.close();  // everything above must still arrive
      return 0;
    });
    auto conn = listener->accept(10s);
    ASSERT_TRUE(conn);
    EXPECT_EQ(conn->is_shm(), shm);
    // On shm the writer is gone before we read anything (a socket buffer may fill up).
    if (shm) {
      EXPECT_EQ(WaitChild(child), 0);
    }
    for (int i = 0; i < 1000; ++i) {
      auto m = conn->peek(5s);
      ASSERT_TRUE(m) << i << ": " << m.error().message();
      auto again = conn->peek(5s);  // idempotent until release
      ASSERT_TRUE(again);
      ASSERT_EQ(m->data(), again->data());
      int v;
      ASSERT_EQ(m->size(), sizeof(int));
      std::memcpy(&v, m->data(), sizeof(int));
      ASSERT_EQ(v, i);
      conn->release();
    }
    auto end = conn->peek(5s);
    EXPECT_EQ(end.error(), make_error_code(TransportErrc::kClosed)) << end.error().message();
    EXPECT_TRUE(*conn->poll(0ms));  // end of stream counts as "recv won't block"
    if (!shm) {
      EXPECT_EQ(WaitChild(child), 0);
    }
  }
}

TEST(Connection, WrongKeyIsAnAuthErrorOnBothSidesAndCreatesNoSegment) {
  for (std::string address : {testing::UniqueAbstract(), std::string("127.0.0.1:0")}) {
    auto listener = Listener::Create(address, kKey);
    ASSERT_TRUE(listener);
    address = listener->address().ToString();
    const auto shm_before = testing::ShmFiles(OurSegmentPrefix());
    const int fds_before = testing::OpenFdCount();
    pid_t child = ForkChild([&] {
      auto c = Client(address, "wrong key");
      if (c) return 10;
      return c.error() == make_error_code(TransportErrc::kAuthRejected) ? 0 : 11;
    });
    auto conn = listener->accept(10s);
    ASSERT_FALSE(conn);
    EXPECT_EQ(conn.error(), make_error_code(TransportErrc::kAuthFailed));
    EXPECT_TRUE(IsAuthError(conn.error()));
    EXPECT_EQ(WaitChild(child), 0);
    EXPECT_EQ(testing::ShmFiles(OurSegmentPrefix()), shm_before);
    EXPECT_EQ(testing::OpenFdCount(), fds_before);     // the failed client's socket is closed
    ExpectServesAnEchoClient(*listener, address, 10);  // the listener keeps serving
  }
}

int RawConnect(const std::string& abstract_name) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un un;
  const socklen_t len = AbstractSockaddr(abstract_name, &un);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&un), len) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

TEST(Connection, SilentClientTimesOutAndDoesNotHoldAccept) {
  const std::string address = testing::UniqueAbstract();
  ListenerOptions lo;
  lo.connection.handshake_timeout = 300ms;
  auto listener = Listener::Create(address, kKey, lo);
  ASSERT_TRUE(listener);
  int silent = RawConnect(address);
  ASSERT_GE(silent, 0);
  const auto t0 = std::chrono::steady_clock::now();
  auto conn = listener->accept(10s);
  ASSERT_FALSE(conn);
  EXPECT_EQ(conn.error(), make_error_code(TransportErrc::kHandshakeTimeout));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  // The silent client's socket was closed by the listener.
  char b[256];
  ssize_t n;
  while ((n = ::recv(silent, b, sizeof(b), 0)) > 0) {
  }
  EXPECT_EQ(n, 0);
  ::close(silent);
  ExpectServesAnEchoClient(*listener, address, 5);
}

TEST(Connection, MalformedAndOversizedHandshakeFramesAreCleanErrors) {
  struct Case {
    std::vector<unsigned char> bytes;
    TransportErrc want;
  };
  const std::vector<Case> cases = {
      {{0x7f, 0xff, 0xff, 0xff, 'x'}, TransportErrc::kFrameTooLarge},
      {{0x00, 0x00, 0x01, 0x01}, TransportErrc::kFrameTooLarge},  // 257 > 256
      {{0xff, 0xff, 0xff, 0xf0}, TransportErrc::kMalformedFrame},
      {{0x00, 0x00, 0x00, 0x03, 'a', 'b', 'c'}, TransportErrc::kAuthFailed},
  };
  for (const Case& c : cases) {
    const std::string address = testing::UniqueAbstract();
    auto listener = Listener::Create(address, kKey);
    ASSERT_TRUE(listener);
    int fd = RawConnect(address);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::send(fd, c.bytes.data(), c.bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(c.bytes.size()));
    auto conn = listener->accept(10s);
    ASSERT_FALSE(conn);
    EXPECT_EQ(conn.error(), make_error_code(c.want)) << conn.error().message();
    ::close(fd);
  }
}

TEST(Connection, SigkillMidHandshakeLeavesListenerUsable) {
  const std::string address = testing::UniqueAbstract();
  auto listener = Listener::Create(address, kKey);
  ASSERT_TRUE(listener);
  pid_t child = ForkChild([&] {
    int fd = RawConnect(address);
    if (fd < 0) return 1;
    ::pause();  // connected, never answers
    return 0;
  });
  std::thread killer = KillAfter(child, 200ms);
  auto conn = listener->accept(10s);
  killer.join();
  ASSERT_FALSE(conn);
  EXPECT_EQ(conn.error(), make_error_code(TransportErrc::kPeerDead)) << conn.error().message();
  EXPECT_EQ(WaitChild(child), 128 + SIGKILL);
  ExpectServesAnEchoClient(*listener, address, 5);
}

// A reader blocked in recv gets everything committed, then kPeerDead, after SIGKILL.
TEST(Connection, SigkillMidTransferReleasesBlockedReader) {
  for (bool shm : {true, false}) {
    const std::string address = testing::UniqueAbstract();
    auto listener = ListenWithShm(address, shm);
    ASSERT_TRUE(listener);
    pid_t child = ForkClient(address, [&](Connection& c) {
      for (int i = 0; i < 100; ++i) {
        if (!c.send_bytes("m" + std::to_string(i))) return 11;
      }
      ::pause();
      return 0;
    });
    auto conn = listener->accept(10s);
    ASSERT_TRUE(conn);
    for (int i = 0; i < 100; ++i) {
      auto m = conn->recv_bytes(5s);
      ASSERT_TRUE(m) << m.error().message();
      ASSERT_EQ(Str(*m), "m" + std::to_string(i));
    }
    std::chrono::steady_clock::time_point killed;
    std::thread killer = KillAfter(child, 100ms, &killed);
    auto m = conn->recv_bytes(10s);
    const auto released = std::chrono::steady_clock::now();
    killer.join();
    ASSERT_FALSE(m);
    // Socket path: a kill between frames looks like a close; shm knows better.
    if (shm) {
      EXPECT_EQ(m.error(), make_error_code(TransportErrc::kPeerDead)) << m.error().message();
    } else {
      EXPECT_EQ(m.error(), make_error_code(TransportErrc::kClosed)) << m.error().message();
    }
    EXPECT_LT(released - killed, 2s);  // hang detection only; latency is a benchmark
    std::printf(
        "shm=%d: reader released %lld us after SIGKILL\n", shm,
        static_cast<long long>(
            std::chrono::duration_cast<std::chrono::microseconds>(released - killed).count()));
    EXPECT_EQ(WaitChild(child), 128 + SIGKILL);
  }
}

// A writer blocked on a full ring is released when the reader dies.
TEST(Connection, SigkillReleasesWriterBlockedOnFullRing) {
  const std::string address = testing::UniqueAbstract();
  auto listener = ListenWithRing(address, 1 << 16);
  ASSERT_TRUE(listener);
  pid_t child = ForkClient(address, [&](Connection&) {
    ::pause();  // connected, never reads
    return 0;
  });
  auto conn = listener->accept(10s);
  ASSERT_TRUE(conn);
  ASSERT_TRUE(conn->is_shm());
  std::thread killer = KillAfter(child, 200ms);
  const std::string msg(1000, 'z');
  Expected<void> r;
  int sent = 0;
  while ((r = conn->send_bytes(msg))) ++sent;
  killer.join();
  EXPECT_GT(sent, 10);
  EXPECT_EQ(r.error(), make_error_code(TransportErrc::kPeerDead)) << r.error().message();
  EXPECT_EQ(WaitChild(child), 128 + SIGKILL);
}

// The peer's close() releases a writer blocked on a full ring with kClosed.
TEST(Connection, PeerCloseReleasesBlockedWriter) {
  const std::string address = testing::UniqueAbstract();
  auto listener = ListenWithRing(address, 1 << 16);
  ASSERT_TRUE(listener);
  pid_t child = ForkClient(address, [&](Connection& c) {
    ::usleep(200000);
    c.close();
    ::pause();  // alive: only the close can release the writer
    return 0;
  });
  auto conn = listener->accept(10s);
  ASSERT_TRUE(conn);
  Expected<void> r;
  while ((r = conn->send_bytes(std::string(1000, 'q')))) {
  }
  EXPECT_EQ(r.error(), make_error_code(TransportErrc::kClosed)) << r.error().message();
  ::kill(child, SIGKILL);
  WaitChild(child);
}

TEST(Connection, TwoHundredFiftySixConcurrentClients) {
  constexpr int kProcs = testing::kSanitized ? 4 : 8;
  constexpr int kPerProc = 256 / kProcs;
  const std::string address = testing::UniqueSocketPath();
  auto listener = ListenWithRing(address, 1 << 14);
  ASSERT_TRUE(listener);
  std::vector<pid_t> children;
  for (int p = 0; p < kProcs; ++p) {
    children.push_back(ForkChild([&, p] {
      std::vector<Connection> conns;
      for (int i = 0; i < kPerProc; ++i) {
        auto c = Client(address, kKey);
        if (!c || !c->is_shm()) return 10;
        conns.push_back(std::move(*c));
      }
      for (int i = 0; i < kPerProc; ++i) {
        if (!conns[i].send_bytes(std::to_string(p * 1000 + i))) return 11;
      }
      for (int i = 0; i < kPerProc; ++i) {
        auto m = conns[i].recv_bytes(30s);
        if (!m || Str(*m) != "echo " + std::to_string(p * 1000 + i)) return 12;
      }
      return 0;
    }));
  }
  const int fds_before = testing::OpenFdCount();
  std::vector<Connection> conns;
  for (int i = 0; i < kProcs * kPerProc; ++i) {
    auto c = listener->accept(30s);
    ASSERT_TRUE(c) << i << ": " << c.error().message();
    ASSERT_TRUE(c->is_shm());
    conns.push_back(std::move(*c));
  }
  // All connections are open at once here.
  for (auto& c : conns) {
    auto m = c.recv_bytes(30s);
    ASSERT_TRUE(m);
    ASSERT_TRUE(c.send_bytes("echo " + Str(*m)));
  }
  for (pid_t c : children) EXPECT_EQ(WaitChild(c), 0);
  conns.clear();
  EXPECT_EQ(testing::OpenFdCount(), fds_before);  // sockets and memfds all released
}

// The server dies during the handshake: the client gets kPeerDead, not a hang.
TEST(Connection, ServerKilledMidHandshake) {
  const std::string address = testing::UniqueAbstract();
  testing::Signal ready;
  pid_t server = ForkChild([&] {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un un;
    const socklen_t len = AbstractSockaddr(address, &un);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&un), len) != 0 || ::listen(fd, 4) != 0) return 1;
    ready.Notify();
    int c = ::accept(fd, nullptr, nullptr);
    (void)c;
    ::pause();  // accepted, never sends a challenge
    return 0;
  });
  ASSERT_TRUE(ready.Wait());
  std::thread killer = KillAfter(server, 200ms);
  const auto t0 = std::chrono::steady_clock::now();
  auto c = Client(address, kKey);
  killer.join();
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), make_error_code(TransportErrc::kPeerDead)) << c.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);  // well before the 5 s timeout
  EXPECT_EQ(WaitChild(server), 128 + SIGKILL);
}

TEST(Listener, SocketFileModeStaleReplacedLiveNotStolen) {
  const std::string path = testing::UniqueSocketPath();
  // A listener that dies leaves its socket file behind.
  pid_t dead = ForkChild([&] {
    auto l = Listener::Create(path, kKey);
    if (!l) return 10;
    ::pause();
    return 0;
  });
  for (int i = 0; i < 200 && ::access(path.c_str(), F_OK) != 0; ++i) ::usleep(10000);
  // While it lives, its file is not stolen (and no probe connection disturbs it).
  auto busy = Listener::Create(path, kKey);
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error(), make_error_code(TransportErrc::kAddressInUse));
  ::kill(dead, SIGKILL);
  EXPECT_EQ(WaitChild(dead), 128 + SIGKILL);
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);  // stale file still there
  auto l = Listener::Create(path, kKey);
  ASSERT_TRUE(l) << l.error().message();
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // A forked child destroying its copy of the listener leaves the parent's file alone.
  pid_t copy = ForkChild([&] {
    l->close();
    return 0;
  });
  EXPECT_EQ(WaitChild(copy), 0);
  EXPECT_EQ(::access(path.c_str(), F_OK), 0);
  l->close();
  EXPECT_NE(::access(path.c_str(), F_OK), 0);  // removed on close
  // A live listener in this process: a second Create fails and leaves no probe
  // connection in its backlog (its accept() sees nobody).
  {
    auto live = Listener::Create(path, kKey);
    ASSERT_TRUE(live);
    auto second = Listener::Create(path, kKey);
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error(), make_error_code(TransportErrc::kAddressInUse));
    EXPECT_EQ(live->accept(200ms).error(), make_error_code(TransportErrc::kTimedOut));
  }
  // A regular file is never replaced.
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  EXPECT_FALSE(Listener::Create(path, kKey));
  ::unlink(path.c_str());
}

constexpr uid_t kNobody = 65534;

// Forks a child that switches to uid/gid kNobody and returns `then()` (20 if it cannot).
template <typename Then>
pid_t ForkAsNobody(Then then) {
  return ForkChild([&] {
    if (::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) return 20;
    return then();
  });
}

// A client of uid kNobody is refused by `listener` (at `address`) by default.
void ExpectNobodyRefused(Listener& listener, const std::string& address) {
  pid_t child = ForkAsNobody([&] { return Client(address, kKey) ? 10 : 0; });
  auto conn = listener.accept(10s);
  ASSERT_FALSE(conn);
  EXPECT_EQ(conn.error(), make_error_code(TransportErrc::kPeerNotAllowed));
  EXPECT_EQ(listener.last_accepted().uid, kNobody);
  EXPECT_EQ(WaitChild(child), 0);
}

TEST(Listener, OtherUidRejectedByDefault) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a client under another uid";
  pid_t probe = ForkAsNobody([] { return 0; });
  if (WaitChild(probe) != 0) GTEST_SKIP() << "cannot switch to uid 65534 here (sandbox)";
  const std::string address = testing::UniqueAbstract();
  auto listener = Listener::Create(address, kKey);
  ASSERT_TRUE(listener);
  ExpectNobodyRefused(*listener, address);
  // Allowed explicitly: accepted (the shm upgrade works too: the memfd is passed by fd).
  ListenerOptions lo;
  lo.allowed_uids = {kNobody};
  const std::string address2 = testing::UniqueAbstract();
  auto l2 = Listener::Create(address2, kKey, lo);
  ASSERT_TRUE(l2);
  pid_t child2 = ForkAsNobody([&] { return EchoClient(address2, true); });
  auto ok = l2->accept(10s);
  ASSERT_TRUE(ok) << ok.error().message();
  ExpectEcho(*ok, 5);
  EXPECT_EQ(WaitChild(child2), 0);
  // Over loopback TCP the uid comes from /proc/net/tcp: rejected by default too.
  auto tcp_default = Listener::Create("127.0.0.1:0", kKey);
  ASSERT_TRUE(tcp_default);
  ExpectNobodyRefused(*tcp_default, tcp_default->address().ToString());
  // Allowed over TCP, the other uid cannot open our 0600 named segment: the upgrade is
  // declined and the connection stays on the socket, like a remote host's.
  auto tcp = Listener::Create("127.0.0.1:0", kKey, lo);
  ASSERT_TRUE(tcp);
  const std::string tcp_address = tcp->address().ToString();
  const auto shm_before = testing::ShmFiles(OurSegmentPrefix());
  pid_t child3 = ForkAsNobody([&] { return EchoClient(tcp_address, false); });
  auto sock = tcp->accept(10s);
  ASSERT_TRUE(sock) << sock.error().message();
  EXPECT_FALSE(sock->is_shm());
  EXPECT_TRUE(sock->peer_is_shmlink());
  EXPECT_EQ(testing::ShmFiles(OurSegmentPrefix()), shm_before);  // offer withdrawn, unlinked
  ExpectEcho(*sock, 5);
  EXPECT_EQ(WaitChild(child3), 0);
}

// fileno() + arm/disarm: select-style waiting on the shm path.
TEST(Connection, FilenoDoorbellWakesSelect) {
  const std::string address = testing::UniqueAbstract();
  auto listener = Listener::Create(address, kKey);
  ASSERT_TRUE(listener);
  pid_t child = ForkClient(address, [&](Connection& c) {
    for (int i = 0; i < 3; ++i) {
      ::usleep(100000);
      if (!c.send_bytes("ding")) return 11;
    }
    auto m = c.recv_bytes(10s);  // wait for the parent before closing
    return m ? 0 : 12;
  });
  auto conn = listener->accept(10s);
  ASSERT_TRUE(conn);
  ASSERT_TRUE(conn->is_shm());
  for (int i = 0; i < 3; ++i) {
    auto armed = conn->arm_fileno();
    ASSERT_TRUE(armed);
    if (!*armed) {
      pollfd p{conn->fileno(), POLLIN, 0};
      ASSERT_EQ(::poll(&p, 1, 5000), 1) << "doorbell never rang";
      conn->disarm_fileno();
    }
    ASSERT_TRUE(*conn->poll(5s));
    auto m = conn->recv_bytes(0ms);
    ASSERT_TRUE(m) << m.error().message();
    EXPECT_EQ(Str(*m), "ding");
  }
  EXPECT_GE(conn->stats().socket_frames_received, 0u);
  ASSERT_TRUE(conn->send_bytes("bye"));
  EXPECT_EQ(WaitChild(child), 0);
}

// A child forked from a process with an open connection may drop its copy without
// ending the parent's streams or releasing the parent's ring roles.
TEST(Connection, ForkedCopyClosingLeavesParentConnectionIntact) {
  const std::string address = testing::UniqueAbstract();
  auto listener = Listener::Create(address, kKey);
  ASSERT_TRUE(listener);
  pid_t peer = ForkChild([&] { return EchoClient(address, true); });
  auto conn = listener->accept(10s);
  ASSERT_TRUE(conn);
  ASSERT_TRUE(conn->is_shm());
  pid_t copy = ForkChild([&] {
    conn->close();  // the child's copy
    return 0;
  });
  EXPECT_EQ(WaitChild(copy), 0);
  ExpectEcho(*conn, 50);          // both directions still open; ends with "close"
  EXPECT_EQ(WaitChild(peer), 0);  // the peer saw no premature end of stream
  auto end = conn->recv_bytes(5s);
  EXPECT_EQ(end.error(), make_error_code(TransportErrc::kClosed)) << end.error().message();
}

TEST(Connection, LargeMessagesTravelInChunksOnShm) {
  const std::string address = testing::UniqueAbstract();
  ListenerOptions lo;
  lo.connection.ring_capacity = 1 << 16;  // one record holds at most 32 KiB - 16
  lo.connection.max_socket_message = 4 << 20;
  auto listener = Listener::Create(address, kKey, lo);
  ASSERT_TRUE(listener);
  pid_t child = ForkChild([&] { return EchoClient(address, true); });
  auto conn = listener->accept(10s);
  ASSERT_TRUE(conn);
  ASSERT_TRUE(conn->is_shm());
  EXPECT_EQ(conn->max_message_size(), 4u << 20);
  // Around the record limit, and far beyond it; interleaved with small messages.
  for (size_t n : {size_t{(1 << 15) - 17}, size_t{(1 << 15) - 16}, size_t{(1 << 15) - 15},
                   size_t{1 << 15}, size_t{100000}, size_t{3 << 20}}) {
    std::string msg(n, '\0');
    for (size_t i = 0; i < n; ++i) msg[i] = static_cast<char>('a' + (i * 7 + n) % 26);
    ASSERT_TRUE(conn->send_bytes(msg)) << n;
    ASSERT_TRUE(conn->send_bytes("small"));
    auto back = conn->recv_bytes(10s);
    ASSERT_TRUE(back) << n << ": " << back.error().message();
    ASSERT_EQ(Str(*back), msg) << n;
    EXPECT_EQ(Str(*conn->recv_bytes(10s)), "small");
  }
  // Zero-copy reserve of a large message (a buffer, sent in chunks by commit()).
  auto buf = conn->reserve(200000);
  ASSERT_TRUE(buf);
  std::memset(buf->data(), 'R', buf->size());
  ASSERT_TRUE(conn->commit());
  auto back = conn->peek(10s);
  ASSERT_TRUE(back);
  EXPECT_EQ(Str(*back), std::string(200000, 'R'));
  conn->release();
  EXPECT_EQ(conn->send_bytes(std::string(5 << 20, 'x')).error(),
            make_error_code(TransportErrc::kTooLarge));
  EXPECT_EQ(conn->commit().error(), make_error_code(TransportErrc::kBadState));
  ExpectEcho(*conn, 3);  // still usable; ends with "close"
  EXPECT_EQ(WaitChild(child), 0);
  EXPECT_EQ(conn->stats().socket_frames_sent, 0u);  // all of it went through the rings
  conn->close();
  EXPECT_EQ(conn->send_bytes("x").error(), make_error_code(TransportErrc::kBadState));
  EXPECT_EQ(conn->recv_bytes().error(), make_error_code(TransportErrc::kBadState));
}

TEST(Address, ParseForms) {
  auto a = Address::Parse("localhost:6000");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->family, AddressFamily::kTcp);
  EXPECT_EQ(a->host, "localhost");
  EXPECT_EQ(a->port, 6000);
  auto b = Address::Parse("@name");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->family, AddressFamily::kUnixAbstract);
  EXPECT_EQ(b->path, "name");
  auto b2 = Address::Parse(std::string_view("\0name", 5));
  ASSERT_TRUE(b2);
  EXPECT_EQ(b2->family, AddressFamily::kUnixAbstract);
  auto c = Address::Parse("/tmp/x:1");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->family, AddressFamily::kUnixPath);
  auto d = Address::Parse("[::1]:80");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->host, "::1");
  EXPECT_EQ(d->ToString(), "[::1]:80");
  EXPECT_FALSE(Address::Parse(""));
  EXPECT_FALSE(Address::Parse("host:70000"));
  EXPECT_FALSE(Address::Parse("/" + std::string(200, 'a')));
  EXPECT_EQ(Address::Parse("rel.sock")->ToString(), "./rel.sock");
}

}  // namespace
}  // namespace shmlink::transport
