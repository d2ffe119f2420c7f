// Copyright shmlink authors. SPDX-License-Identifier: MIT
// echo_client: sends messages to an echo server (examples/echo_server, or any
// multiprocessing.connection Listener that echoes) and prints the replies.
//
//   echo_client --socket /tmp/echo.sock hello world          # bytes, then b"close"
//   echo_client --address localhost:6000 --pickle hello      # pickled str, then 'close'
//   echo_client --socket /tmp/echo.sock --rounds 100000      # round-trip timing
//
// Prints "transport: shared memory" or "transport: socket" after connecting.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <shmlink/connection.h>
#include <shmlink/pickle.h>

using namespace shmlink::transport;
namespace pickle = shmlink::pickle;

int main(int argc, char** argv) {
  CLI::App app{"shmlink echo client"};
  std::string socket_path, address, authkey = "secret password";
  std::vector<std::string> messages;
  bool use_pickle = false, no_close = false, no_shm = false;
  int rounds = 0, size = 64;
  auto* s = app.add_option("--socket", socket_path, "Unix socket path (or @abstract-name)");
  auto* a = app.add_option("--address", address, "TCP HOST:PORT");
  s->excludes(a);
  app.add_option("--authkey", authkey, "shared authentication key")->capture_default_str();
  app.add_flag("--pickle", use_pickle, "send pickled str objects (Python conn.send)");
  app.add_flag("--no-close", no_close, "do not send the final close message");
  app.add_flag("--no-shm", no_shm, "keep data on the socket");
  app.add_option("--rounds", rounds, "time this many round trips of --size bytes");
  app.add_option("--size", size, "message size for --rounds")->capture_default_str();
  app.add_option("messages", messages, "messages to send");
  CLI11_PARSE(app, argc, argv);
  if (socket_path.empty() && address.empty()) {
    std::fprintf(stderr, "echo_client: give --socket PATH or --address HOST:PORT\n");
    return 2;
  }
  ConnectionOptions options;
  options.enable_shm = !no_shm;
  auto conn = Client(socket_path.empty() ? address : socket_path, authkey, options);
  if (!conn) {
    std::fprintf(stderr, "echo_client: connect: %s\n", conn.error().message().c_str());
    return 1;
  }
  std::printf("transport: %s\n", conn->is_shm() ? "shared memory" : "socket");
  for (const std::string& m : messages) {
    if (use_pickle) {
      if (auto r = conn->send(pickle::Value::Str(m)); !r) {
        std::fprintf(stderr, "echo_client: send: %s\n", r.error().message().c_str());
        return 1;
      }
      auto v = conn->recv();
      if (!v) {
        std::fprintf(stderr, "echo_client: recv: %s\n", v.error().message().c_str());
        return 1;
      }
      std::printf("%s\n", v->is_str() ? v->str().c_str() : "(non-str reply)");
    } else {
      if (auto r = conn->send_bytes(m); !r) {
        std::fprintf(stderr, "echo_client: send: %s\n", r.error().message().c_str());
        return 1;
      }
      auto v = conn->recv_bytes();
      if (!v) {
        std::fprintf(stderr, "echo_client: recv: %s\n", v.error().message().c_str());
        return 1;
      }
      std::printf("%.*s\n", static_cast<int>(v->size()), reinterpret_cast<const char*>(v->data()));
    }
  }
  if (rounds > 0) {
    std::vector<std::byte> payload(static_cast<size_t>(size), std::byte{'x'});
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < rounds; ++i) {
      if (!conn->send_bytes(payload)) return 1;
      auto m = conn->peek();
      if (!m || m->size() != payload.size()) return 1;
      conn->release();
    }
    const double us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%d round trips of %d B: %.2f us mean\n", rounds, size, us / rounds);
  }
  if (!no_close) {
    auto r = use_pickle ? conn->send(pickle::Value::Str("close")) : conn->send_bytes("close");
    if (!r) return 1;
  }
  conn->close();
  return 0;
}
