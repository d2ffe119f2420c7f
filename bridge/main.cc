// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// shmlink-bridge: carries a local shmlink ring or queue to other hosts over ZeroMQ.
//
//   shmlink-bridge export ring  /feed --bind tcp://0.0.0.0:7001      (host A)
//   shmlink-bridge import ring  /feed --connect tcp://hostA:7001     (host B)
//   shmlink-bridge export queue /jobs --bind tcp://0.0.0.0:7002
//   shmlink-bridge import queue /jobs --connect tcp://hostA:7002
//
// The shared key comes from --authkey-file or SHMLINK_BRIDGE_AUTHKEY. See docs/bridge.md.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <string>

#include "bridge/bridge.h"
#include "bridge/log.h"

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop.store(true, std::memory_order_relaxed); }  // relaxed: polled flag

bool PowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

int main(int argc, char** argv) {
  using namespace shmlink::bridge;
  CLI::App app{"shmlink-bridge: carry a shmlink ring or queue between hosts over ZeroMQ"};
  app.require_subcommand(1);
  BridgeOptions o;
  std::string kind, auth = "auto", keyfile;
  auto add_common = [&](CLI::App* sub) {
    sub->add_option("kind", kind, "ring, queue or topic")
        ->required()
        ->check(CLI::IsMember({"ring", "queue", "topic"}));
    sub->add_option("name", o.name, "local shm name, e.g. /feed")->required();
    sub->add_option("--authkey-file", keyfile,
                    "file holding the shared key (default: $SHMLINK_BRIDGE_AUTHKEY)");
    sub->add_option("--auth", auth, "auto (CURVE if libzmq has it), curve or hmac")
        ->capture_default_str()
        ->check(CLI::IsMember({"auto", "curve", "hmac"}));
    sub->add_option("--capacity", o.local.ring_capacity, "ring/topic bytes when creating it")
        ->capture_default_str();
    sub->add_option("--slots", o.local.queue_slots, "queue slots when creating it")
        ->capture_default_str();
    sub->add_option("--max-message-size", o.local.queue_max_message,
                    "queue slot payload bytes when creating it")
        ->capture_default_str();
    sub->add_option("--heartbeat-ms", o.heartbeat_ms, "liveness traffic period")
        ->capture_default_str();
    sub->add_option("--peer-timeout-ms", o.peer_timeout_ms, "silence after which a peer is gone")
        ->capture_default_str();
    sub->add_option("--hwm", o.net.send_hwm, "ZeroMQ high-water mark (batches per peer)")
        ->capture_default_str();
    sub->add_option("--reconnect-ivl-max-ms", o.net.reconnect_ivl_max_ms, "reconnect backoff limit")
        ->capture_default_str();
  };
  auto* exp = app.add_subcommand("export", "send a local ring/queue to importers");
  add_common(exp);
  exp->add_option("--bind", o.endpoint, "tcp://ADDR:PORT to listen on")->required();
  exp->add_option("--handles", o.local.queue_handles,
                  "queue: messages held in flight at most (consumer handles)")
      ->capture_default_str();
  exp->add_option("--batch-bytes", o.batch_bytes, "largest batch per ZeroMQ message")
      ->capture_default_str();
  auto* imp = app.add_subcommand("import", "write what an exporter sends into a local ring/queue");
  add_common(imp);
  imp->add_option("--connect", o.endpoint, "tcp://HOST:PORT of the exporter")->required();
  imp->add_option("--window-messages", o.window_messages, "credit: messages in flight")
      ->capture_default_str();
  imp->add_option("--window-bytes", o.window_bytes, "credit: bytes in flight")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  o.kind = kind == "ring" ? Kind::kRing : kind == "queue" ? Kind::kQueue : Kind::kTopic;
  o.local.topic_capacity = o.local.ring_capacity;
  if (!PowerOfTwo(o.local.ring_capacity) || !PowerOfTwo(o.local.queue_slots) ||
      o.local.queue_handles == 0 || o.local.queue_handles > 200 || o.window_messages == 0 ||
      o.window_bytes == 0 || o.batch_bytes == 0 || o.heartbeat_ms <= 0 ||
      o.peer_timeout_ms <= o.heartbeat_ms) {
    std::fprintf(stderr,
                 "shmlink-bridge: bad option (capacity/slots: powers of two; handles 1..200; "
                 "windows > 0; peer timeout > heartbeat)\n");
    return 2;
  }
  auto mode = ParseAuthMode(auth);
  if (!mode) {
    std::fprintf(stderr, "shmlink-bridge: --auth %s: %s\n", auth.c_str(),
                 mode.error().message().c_str());
    return 2;
  }
  o.net.auth = *mode;
  o.net.recv_hwm = o.net.send_hwm;
  auto key = LoadAuthKey(keyfile);
  if (!key) {
    std::fprintf(stderr,
                 "shmlink-bridge: no authkey (%s): give --authkey-file FILE or set "
                 "SHMLINK_BRIDGE_AUTHKEY\n",
                 key.error().message().c_str());
    return 2;
  }
  o.net.authkey = *key;

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return exp->parsed() ? RunExporter(o, g_stop) : RunImporter(o, g_stop);
}
