// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The ZeroMQ side of the bridge: socket setup (reconnect backoff, high-water marks,
// keepalive, size limits), peer authentication, and the connection monitor that turns
// libzmq's events (refused handshakes, garbage on the port, disconnects) into log lines.
//
// Authentication, chosen by AuthMode:
//   kCurve: both key pairs are derived from the shared authkey (HMAC-SHA256 of fixed
//           labels, used as Curve25519 secret keys); the exporter is the CURVE server and
//           checks the client's public key in a ZAP handler. Traffic is encrypted. A peer
//           with another key fails the CURVE handshake inside libzmq; the monitor logs it.
//   kHmac:  libzmq without CURVE: the application runs the authkey HMAC challenge of
//           multiprocessing.connection (transport/handshake.h) in kAuth messages, both
//           ways, before any data flows. Traffic is not encrypted.
//
// Thread safety: not-thread-safe (one event loop per bridge process).
#ifndef SHMLINK_BRIDGE_NET_H_
#define SHMLINK_BRIDGE_NET_H_

#include <zmq.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include <shmlink/expected.h>

namespace shmlink::bridge {

enum class AuthMode { kCurve, kHmac };

// "auto" (CURVE if libzmq has it), "curve" (error if it has not) or "hmac".
[[nodiscard]] Expected<AuthMode> ParseAuthMode(std::string_view s);
std::string_view AuthModeName(AuthMode m) noexcept;

// The shared key: the contents of `path` (trailing newline stripped) if not empty, else
// the environment variable SHMLINK_BRIDGE_AUTHKEY. Errors: ENOENT/EACCES..., or
// EINVAL if no key was given or it is empty.
[[nodiscard]] Expected<std::string> LoadAuthKey(const std::string& path);

struct NetOptions {
  AuthMode auth = AuthMode::kHmac;
  std::string authkey;
  int send_hwm = 1000;  // ZeroMQ messages (batches) queued per peer, each way
  int recv_hwm = 1000;
  int reconnect_ivl_ms = 100;  // first reconnect delay; doubles up to the max
  int reconnect_ivl_max_ms = 5000;
  int handshake_ivl_ms = 3000;      // a connection that does not finish ZMTP in time is dropped
  int64_t max_msg_size = 64 << 20;  // larger incoming ZeroMQ messages are dropped by libzmq
};

// Owner of one zmq context, its bridge socket, the monitor and (CURVE) the ZAP handler.
class Net {
 public:
  Net() = default;
  Net(const Net&) = delete;
  Net& operator=(const Net&) = delete;
  ~Net();

  // ROUTER bound to `endpoint` (exporter). Errors: errno of zmq (EADDRINUSE, EINVAL, ...).
  [[nodiscard]] Expected<void> Bind(const std::string& endpoint, const NetOptions& o);
  // DEALER connected to `endpoint` (importer) with routing id `id`.
  [[nodiscard]] Expected<void> Connect(const std::string& endpoint, const std::string& id,
                                       const NetOptions& o);

  void* socket() const noexcept { return sock_; }
  void* monitor() const noexcept { return mon_; }
  void* zap() const noexcept { return zap_; }
  // Reads pending monitor events and logs them. Returns the number of failed handshakes
  // seen (wrong key, garbage on the port).
  int DrainMonitor();
  // Answers pending ZAP requests (CURVE): accepts exactly the client key derived from the
  // authkey, refuses (and logs) anything else.
  void DrainZap();
  int handshake_failures() const noexcept { return handshake_failures_; }
  // Client side: handshakes failed in a row since the last one that succeeded.
  int failures_in_a_row() const noexcept { return failures_in_a_row_; }

 private:
  Expected<void> Setup(int type, const NetOptions& o);
  void* ctx_ = nullptr;
  void* sock_ = nullptr;
  void* mon_ = nullptr;
  void* zap_ = nullptr;
  std::string client_public_;              // CURVE: the one client key accepted (Z85)
  std::map<int, std::string> peer_by_fd_;  // accepted connections, for log lines
  std::string pending_failure_;            // handshake failure awaiting its disconnect event
  // Refusal log lines per peer host: the first at once, then at most one per 10 s with a
  // count (a peer with a wrong key retries with backoff forever).
  struct Refusals {
    std::chrono::steady_clock::time_point last_log{};
    uint64_t suppressed = 0;
  };
  std::map<std::string, Refusals> refusals_;
  void LogRefusal(const std::string& who, const std::string& why);
  int handshake_failures_ = 0;
  int failures_in_a_row_ = 0;
  bool server_ = false;
};

// Peer address ("10.77.0.2") of a received message, or "?" if libzmq does not say.
std::string PeerAddress(zmq_msg_t* msg);

}  // namespace shmlink::bridge

#endif  // SHMLINK_BRIDGE_NET_H_
