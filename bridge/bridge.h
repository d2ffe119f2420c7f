// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The two halves of a bridge, each an event loop in one process:
//   RunExporter: reads the local ring/queue `name` in place and sends it, batched, to the
//                importers connected to its bound endpoint (ZeroMQ ROUTER);
//   RunImporter: connects to an exporter (ZeroMQ DEALER) and writes what arrives into the
//                local ring/queue `name` (created if missing).
// Semantics, wire protocol and limits: docs/bridge.md.
//
// Exit codes: 0 ring stream ended (writer closed) or stopped by *stop; 1 local error;
// 2 network setup error; 3 authentication refused (importer).
// Thread safety: not-thread-safe; one bridge per process (*stop may be set from a signal
// handler).
#ifndef SHMLINK_BRIDGE_BRIDGE_H_
#define SHMLINK_BRIDGE_BRIDGE_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "bridge/local_endpoint.h"
#include "bridge/net.h"
#include "bridge/wire.h"

namespace shmlink::bridge {

struct BridgeOptions {
  Kind kind = Kind::kRing;
  std::string name;      // local shm name, e.g. "/feed"
  std::string endpoint;  // tcp://ADDR:PORT
  LocalOptions local;
  NetOptions net;
  // Importer: credit it grants (messages and bytes in flight, sent but not yet committed
  // locally). The exporter also caps ring credit at half the source ring. Sized so that
  // neither limit stalls a 64 B or a 64 KiB stream on loopback (bridge_bench).
  uint64_t window_messages = 32768;
  uint64_t window_bytes = 16 << 20;
  // Exporter: a batch is sent as soon as the source has nothing more right now, or when it
  // reaches these limits (so batching costs at most the time to copy one batch).
  uint64_t batch_bytes = 64 << 10;
  uint32_t batch_records = 4096;
  int heartbeat_ms = 200;      // liveness traffic when idle (and resend check period)
  int peer_timeout_ms = 2000;  // nothing heard for this long: the peer is gone
};

int RunExporter(const BridgeOptions& o, const std::atomic<bool>& stop);
int RunImporter(const BridgeOptions& o, const std::atomic<bool>& stop);

}  // namespace shmlink::bridge

#endif  // SHMLINK_BRIDGE_BRIDGE_H_
