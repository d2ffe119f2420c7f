// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// cpp_echo_peer: the C++ side of the Python Listener/Client interop tests.
//
//   cpp_echo_peer listen ADDRESS KEY    prints "READY <address>", accepts one client and
//                                       echoes every message until end of stream
//   cpp_echo_peer connect ADDRESS KEY N sends N byte messages, checks each echo, then
//                                       closes; prints "OK shm=<0|1>"
// Exit status: 0 success, 3 authentication failure, 1 other errors.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <shmlink/connection.h>
#include <shmlink/transport_error.h>

using shmlink::transport::Client;
using shmlink::transport::Listener;
using shmlink::transport::TransportErrc;

namespace {
int Fail(const char* what, std::error_code ec) {
  std::fprintf(stderr, "%s: %s\n", what, ec.message().c_str());
  return shmlink::transport::IsAuthError(ec) ? 3 : 1;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s listen|connect ADDRESS KEY [N]\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1], address = argv[2], key = argv[3];
  if (mode == "listen") {
    auto l = Listener::Create(address, key);
    if (!l) return Fail("listen", l.error());
    std::printf("READY %s\n", l->address().ToString().c_str());
    std::fflush(stdout);
    auto c = l->accept();
    if (!c) return Fail("accept", c.error());
    for (;;) {
      auto m = c->recv_bytes();
      if (!m) {
        if (m.error() == make_error_code(TransportErrc::kClosed)) return 0;
        return Fail("recv", m.error());
      }
      auto s = c->send_bytes(*m);
      if (!s) return Fail("send", s.error());
    }
  }
  if (mode == "connect" && argc > 4) {
    const int n = std::atoi(argv[4]);
    auto c = Client(address, key);
    if (!c) return Fail("connect", c.error());
    for (int i = 0; i < n; ++i) {
      std::string msg = "message " + std::to_string(i) + std::string(i % 100, 'x');
      auto s = c->send_bytes(msg);
      if (!s) return Fail("send", s.error());
      auto r = c->recv_bytes();
      if (!r) return Fail("recv", r.error());
      if (std::string(reinterpret_cast<const char*>(r->data()), r->size()) != msg) {
        std::fprintf(stderr, "echo mismatch at %d\n", i);
        return 1;
      }
    }
    std::printf("OK shm=%d\n", c->is_shm() ? 1 : 0);
    c->close();
    return 0;
  }
  return 2;
}
