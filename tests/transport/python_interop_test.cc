// Copyright shmlink authors. SPDX-License-Identifier: MIT
// Interop with Debian's stock /usr/bin/python3 (3.11, no shmlink installed): Python's
// multiprocessing.connection Client/Listener against shmlink's Listener/Client on every
// address family, Python 3.12 handshake rules (py_peer.py --modern), legacy (3.11) mode of
// our own side, wrong keys both ways, pickled objects, and the seed's programs over TCP.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/test_util.h"
#include "tests/transport/transport_test_util.h"

#include <shmlink/connection.h>
#include <shmlink/pickle.h>

namespace shmlink::transport {
namespace {

using namespace std::chrono_literals;
using shmlink::testing::Child;
using shmlink::testing::Str;

constexpr std::string_view kKey = "secret password";
const char* kPython = "/usr/bin/python3";
const char* kPeer = "tests/transport/py_peer.py";

// py_peer.py under the stock Python: `mode` ("connect" or "listen") on `address` with
// `key`, following Python 3.12's handshake rules if `modern`, plus `extra` arguments.
Child StartPeer(const std::string& mode, const std::string& address, std::string_view key,
                bool modern, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {kPython, kPeer, mode, address, std::string(key)};
  if (modern) argv.push_back("--modern");
  argv.insert(argv.end(), extra.begin(), extra.end());
  return Child(argv);
}

// The address a listening py_peer.py reports ("READY <address>"), or "" if it does not.
std::string ListeningAddress(Child& peer) {
  const std::string line = peer.ReadLine(20s);
  return line.rfind("READY ", 0) == 0 ? line.substr(6) : "";
}

std::string AddressFor(const std::string& family) {
  if (family == "path") return testing::UniqueSocketPath();
  if (family == "abstract") return testing::UniqueAbstract();
  return "127.0.0.1:0";
}

// A TCP port that was free a moment ago (for programs that cannot report theirs).
int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

void ExpectEcho(Connection& conn, int count) {
  for (int i = 0; i < count; ++i) {
    std::string msg = "msg-" + std::to_string(i) + std::string(i * 37 % 5000, 'p');
    ASSERT_TRUE(conn.send_bytes(msg));
    auto back = conn.recv_bytes(10s);
    ASSERT_TRUE(back) << back.error().message();
    ASSERT_EQ(Str(*back), msg);
  }
  // An empty message and a big one (several socket reads).
  ASSERT_TRUE(conn.send_bytes(""));
  ASSERT_EQ(conn.recv_bytes(10s)->size(), 0u);
  const std::string big(3 << 20, 'B');
  ASSERT_TRUE(conn.send_bytes(big));
  ASSERT_EQ(Str(*conn.recv_bytes(10s)), big);
  ASSERT_TRUE(conn.send_bytes("close"));
}

struct Param {
  std::string family;
  bool modern_python;
  AuthDialect ours;
};

std::string Name(const ::testing::TestParamInfo<Param>& p) {
  return p.param.family + (p.param.modern_python ? "_py312rules" : "_py311") +
         (p.param.ours == AuthDialect::kLegacy ? "_oursLegacy" : "_oursModern");
}

class PythonInterop : public ::testing::TestWithParam<Param> {};

TEST_P(PythonInterop, StockPythonClientToShmlinkListener) {
  const Param& p = GetParam();
  ListenerOptions lo;
  lo.connection.auth.dialect = p.ours;
  auto listener = Listener::Create(AddressFor(p.family), kKey, lo);
  ASSERT_TRUE(listener) << listener.error().message();
  Child py = StartPeer("connect", listener->address().ToString(), kKey, p.modern_python);
  auto conn = listener->accept(20s);
  ASSERT_TRUE(conn) << conn.error().message();
  EXPECT_FALSE(conn->is_shm());
  EXPECT_FALSE(conn->peer_is_shmlink());
  if (p.family != "tcp") {
    EXPECT_EQ(listener->last_accepted().pid, py.pid());
  }
  ExpectEcho(*conn, 200);
  EXPECT_EQ(py.ReadLine(20s), "DONE 203");
  EXPECT_EQ(conn->recv_bytes(10s).error(), make_error_code(TransportErrc::kClosed));
  EXPECT_EQ(py.Wait(), 0);
}

TEST_P(PythonInterop, ShmlinkClientToStockPythonListener) {
  const Param& p = GetParam();
  Child py = StartPeer("listen", AddressFor(p.family), kKey, p.modern_python);
  const std::string address = ListeningAddress(py);
  ASSERT_NE(address, "");
  ConnectionOptions co;
  co.auth.dialect = p.ours;
  auto conn = Client(address, kKey, co);
  ASSERT_TRUE(conn) << conn.error().message();
  EXPECT_FALSE(conn->is_shm());
  ExpectEcho(*conn, 200);
  EXPECT_EQ(py.ReadLine(20s), "DONE 203");
  EXPECT_EQ(py.Wait(), 0);
}

INSTANTIATE_TEST_SUITE_P(Families, PythonInterop,
                         ::testing::Values(Param{"path", false, AuthDialect::kModern},
                                           Param{"abstract", false, AuthDialect::kModern},
                                           Param{"tcp", false, AuthDialect::kModern},
                                           Param{"abstract", true, AuthDialect::kModern},
                                           Param{"tcp", true, AuthDialect::kModern},
                                           Param{"abstract", false, AuthDialect::kLegacy},
                                           Param{"abstract", true, AuthDialect::kLegacy}),
                         Name);

// Our challenge with every digest Python 3.12 allows, answered by a 3.12-rules client.
TEST(PythonInteropAuth, EveryAllowedDigestWithPython312Rules) {
  for (const char* digest : {"md5", "sha256", "sha384", "sha3_256", "sha3_384"}) {
    ListenerOptions lo;
    lo.connection.auth.digest = digest;
    auto listener = Listener::Create(testing::UniqueAbstract(), kKey, lo);
    ASSERT_TRUE(listener);
    Child py = StartPeer("connect", listener->address().ToString(), kKey, /*modern=*/true);
    auto conn = listener->accept(20s);
    ASSERT_TRUE(conn) << digest << ": " << conn.error().message();
    ASSERT_TRUE(conn->send_bytes("close"));
    EXPECT_EQ(py.ReadLine(20s), "DONE 1") << digest;
    EXPECT_EQ(py.Wait(), 0) << digest;
  }
}

TEST(PythonInteropAuth, WrongKeyFailsOnBothSides) {
  for (bool modern : {false, true}) {
    // Python client, wrong key.
    auto listener = Listener::Create(testing::UniqueAbstract(), kKey);
    ASSERT_TRUE(listener);
    Child py = StartPeer("connect", listener->address().ToString(), "not the key", modern);
    auto conn = listener->accept(20s);
    ASSERT_FALSE(conn);
    EXPECT_EQ(conn.error(), make_error_code(TransportErrc::kAuthFailed));
    EXPECT_EQ(py.ReadLine(20s).rfind("AUTHERROR", 0), 0u);
    EXPECT_EQ(py.Wait(), 3);

    // Python listener, our client has the wrong key.
    Child py2 = StartPeer("listen", testing::UniqueAbstract(), kKey, modern);
    const std::string address = ListeningAddress(py2);
    ASSERT_NE(address, "");
    auto c = Client(address, "not the key");
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error(), make_error_code(TransportErrc::kAuthRejected)) << c.error().message();
    EXPECT_EQ(py2.ReadLine(20s).rfind("AUTHERROR", 0), 0u);
    EXPECT_EQ(py2.Wait(), 3);
  }
}

TEST(PythonInteropObjects, PickledObjectsBothWays) {
  Child py = StartPeer("listen", testing::UniqueAbstract(), kKey, /*modern=*/false,
                       {"--mode", "pickle", "--send-first"});
  const std::string address = ListeningAddress(py);
  ASSERT_NE(address, "");
  auto conn = Client(address, kKey);
  ASSERT_TRUE(conn) << conn.error().message();
  auto first = conn->recv(10s);  // ['a', 2.5, None, 7, 'hello']
  ASSERT_TRUE(first) << first.error().message();
  ASSERT_TRUE(first->is_list());
  ASSERT_EQ(first->items().size(), 5u);
  EXPECT_EQ(first->items()[0].str(), "a");
  EXPECT_EQ(first->items()[1].as_float(), 2.5);
  EXPECT_TRUE(first->items()[2].is_none());
  EXPECT_EQ(first->items()[3].as_int(), 7);
  // Echo it back, plus a dict; Python echoes each.
  ASSERT_TRUE(conn->send(*first));
  auto back = conn->recv(10s);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, *first);
  ASSERT_TRUE(conn->send(pickle::Value::Str("close")));
  EXPECT_EQ(py.ReadLine(20s), "DONE 2");
  EXPECT_EQ(py.Wait(), 0);
}

// The seed's programs, unchanged but for the port: its Listener (stock Python) <-> our
// Client, and its Client <-> our Listener, over TCP on loopback.
TEST(Seed, SeedListenerWithShmlinkClient) {
  const std::string address = "localhost:" + std::to_string(FreePort());
  Child py({kPython, "examples/python/seed_listener.py", address});
  Expected<Connection> conn = TransportErrc::kBadState;
  for (int i = 0; i < 200; ++i) {  // until the listener is up
    conn = Client(address, kKey);
    if (conn) break;
    ::usleep(20000);
  }
  ASSERT_TRUE(conn) << conn.error().message();
  EXPECT_FALSE(conn->is_shm());
  std::vector<pickle::Value> items;
  items.push_back(pickle::Value::Str("a"));
  items.push_back(pickle::Value::Float(2.5));
  items.push_back(pickle::Value::None());
  ASSERT_TRUE(conn->send(pickle::Value::List(std::move(items))));
  ASSERT_TRUE(conn->send(pickle::Value::Str("close")));
  EXPECT_EQ(py.ReadLine(20s).rfind("connection accepted from ('127.0.0.1', ", 0), 0u);
  EXPECT_EQ(py.ReadLine(20s), "received ['a', 2.5, None]");
  EXPECT_EQ(py.ReadLine(20s), "received 'close'");
  EXPECT_EQ(py.Wait(), 0);
  // The listener closed the connection after 'close'.
  EXPECT_EQ(conn->recv_bytes(10s).error(), make_error_code(TransportErrc::kClosed));
}

TEST(Seed, SeedClientWithShmlinkListener) {
  auto listener = Listener::Create("localhost:0", kKey);
  ASSERT_TRUE(listener);
  const std::string address = "localhost:" + std::to_string(listener->address().port);
  Child py({kPython, "examples/python/seed_client.py", address, "--list"});
  auto conn = listener->accept(20s);
  ASSERT_TRUE(conn) << conn.error().message();
  EXPECT_FALSE(conn->is_shm());
  EXPECT_EQ(listener->last_accepted().address.host, "127.0.0.1");
  auto list = conn->recv(10s);
  ASSERT_TRUE(list) << list.error().message();
  ASSERT_TRUE(conn->send(*list));
  EXPECT_EQ(py.ReadLine(20s), "echoed ['a', 2.5, None]");
  auto msg = conn->recv(10s);
  ASSERT_TRUE(msg) << msg.error().message();
  ASSERT_TRUE(msg->is_str());
  EXPECT_EQ(msg->str(), "close");
  EXPECT_EQ(conn->recv(10s).error(), make_error_code(TransportErrc::kClosed));
  EXPECT_EQ(py.Wait(), 0);
}

// The seed's commented-out example sends `int` and `sum`: code references, refused as
// kUnsupported without executing anything; the connection stays usable.
TEST(Seed, CodeReferencesAreRefusedAndConnectionSurvives) {
  auto listener = Listener::Create(testing::UniqueAbstract(), kKey);
  ASSERT_TRUE(listener);
  const std::string script =
      "import sys\n"
      "from multiprocessing.connection import Client\n"
      "conn = Client('\\0' + sys.argv[1][1:], authkey=b'secret password')\n"
      "conn.send(['a', 2.5, None, int, sum])\n"
      "conn.send('close')\n"
      "conn.close()\n";
  Child py({kPython, "-c", script, listener->address().ToString()});
  auto conn = listener->accept(20s);
  ASSERT_TRUE(conn) << conn.error().message();
  auto refused = conn->recv(10s);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), make_error_code(pickle::PickleErrc::kUnsupported));
  auto next = conn->recv(10s);
  ASSERT_TRUE(next) << next.error().message();
  EXPECT_EQ(next->str(), "close");
  EXPECT_EQ(py.Wait(), 0);
}

}  // namespace
}  // namespace shmlink::transport
