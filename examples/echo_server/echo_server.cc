// Copyright shmlink authors. SPDX-License-Identifier: MIT
// echo_server: a shmlink Listener that echoes every message back.
//
//   echo_server --socket /tmp/echo.sock --authkey 'secret password'
//   echo_server --address localhost:6000 --authkey 'secret password'
//
// Clients may be shmlink (data over shared memory) or stock Python
// (multiprocessing.connection.Client, data over the socket). The server serves one client
// at a time; it exits cleanly (status 0) when a client sends the bytes `close` or a pickled
// 'close' (as the seed's client program does), and goes back to accept() when a client
// just disconnects. Prints "listening on ADDRESS" (with the real port for port 0) first.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <string>

#include <shmlink/connection.h>
#include <shmlink/pickle.h>

using namespace shmlink::transport;

namespace {

bool IsClose(std::span<const std::byte> msg) {
  if (msg.size() == 5 && std::memcmp(msg.data(), "close", 5) == 0) return true;
  auto v = shmlink::pickle::Decode(msg);
  return v && v->is_str() && v->str() == "close";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"shmlink echo server"};
  std::string socket_path, address, authkey = "secret password";
  bool no_shm = false;
  auto* s = app.add_option("--socket", socket_path, "Unix socket path (or @abstract-name)");
  auto* a = app.add_option("--address", address, "TCP HOST:PORT (port 0: any free port)");
  s->excludes(a);
  app.add_option("--authkey", authkey, "shared authentication key")->capture_default_str();
  app.add_flag("--no-shm", no_shm, "keep data on the socket even with shmlink clients");
  CLI11_PARSE(app, argc, argv);
  if (socket_path.empty() && address.empty()) {
    std::fprintf(stderr, "echo_server: give --socket PATH or --address HOST:PORT\n");
    return 2;
  }
  ListenerOptions options;
  options.connection.enable_shm = !no_shm;
  auto listener = Listener::Create(socket_path.empty() ? address : socket_path, authkey, options);
  if (!listener) {
    std::fprintf(stderr, "echo_server: listen: %s\n", listener.error().message().c_str());
    return 1;
  }
  std::printf("listening on %s\n", listener->address().ToString().c_str());
  std::fflush(stdout);
  for (;;) {
    auto conn = listener->accept();
    if (!conn) {
      std::fprintf(stderr, "echo_server: accept: %s\n", conn.error().message().c_str());
      continue;  // wrong key, timeout, ...: serve the next client
    }
    const PeerInfo& peer = listener->last_accepted();
    std::printf("connection accepted from %s pid=%d uid=%d (%s)\n", peer.address.ToString().c_str(),
                static_cast<int>(peer.pid), static_cast<int>(peer.uid),
                conn->is_shm() ? "shared memory" : "socket");
    std::fflush(stdout);
    for (;;) {
      auto msg = conn->peek();
      if (!msg) {
        if (msg.error() != make_error_code(TransportErrc::kClosed)) {
          std::fprintf(stderr, "echo_server: recv: %s\n", msg.error().message().c_str());
        }
        break;
      }
      if (IsClose(*msg)) {
        conn->release();
        conn->close();
        listener->close();
        std::printf("closed\n");
        return 0;
      }
      auto sent = conn->send_bytes(*msg);
      conn->release();
      if (!sent) {
        std::fprintf(stderr, "echo_server: send: %s\n", sent.error().message().c_str());
        break;
      }
    }
  }
}
