// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "bridge/net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

#include "bridge/log.h"

#include <shmlink/handshake.h>

namespace shmlink::bridge {
namespace {

Unexpected ZmqError() noexcept {
  return MakeUnexpected(std::error_code(zmq_errno(), std::generic_category()));
}

const char* kMonitorEndpoint = "inproc://shmlink-bridge-monitor";
const char* kZapEndpoint = "inproc://zeromq.zap.01";

// Curve25519 key pair (Z85 text, 40 characters each) derived from the authkey and a label.
struct KeyPair {
  std::string pub, sec;
};

Expected<KeyPair> DeriveKeyPair(const std::string& authkey, std::string_view label) {
  auto key = std::as_bytes(std::span(authkey.data(), authkey.size()));
  auto mac = transport::Hmac("sha256", key, std::as_bytes(std::span(label.data(), label.size())));
  if (!mac) return MakeUnexpected(mac.error());
  char sec[41] = {};
  char pub[41] = {};
  if (zmq_z85_encode(sec, reinterpret_cast<const uint8_t*>(mac->data()), 32) == nullptr ||
      zmq_curve_public(pub, sec) != 0) {
    return ZmqError();
  }
  return KeyPair{pub, sec};
}

std::string ProtocolErrorName(int v) {
  switch (v) {
    case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
      return "CURVE cryptographic error (wrong key?)";
    case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
      return "security mechanism mismatch";
    case ZMQ_PROTOCOL_ERROR_ZMTP_UNEXPECTED_COMMAND:
      return "unexpected ZMTP command";
    case ZMQ_PROTOCOL_ERROR_ZMTP_INVALID_SEQUENCE:
      return "invalid ZMTP sequence";
    case ZMQ_PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE:
      return "key exchange failed";
    default:
      break;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "protocol error 0x%x", v);
  return buf;
}

std::string FdPeer(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

std::string FrameString(zmq_msg_t* m) {
  return std::string(static_cast<const char*>(zmq_msg_data(m)), zmq_msg_size(m));
}

}  // namespace

Expected<AuthMode> ParseAuthMode(std::string_view s) {
  const bool curve = zmq_has("curve") != 0;
  if (s == "auto") return curve ? AuthMode::kCurve : AuthMode::kHmac;
  if (s == "hmac") return AuthMode::kHmac;
  if (s == "curve" && curve) return AuthMode::kCurve;
  if (s == "curve") return MakeUnexpected(std::make_error_code(std::errc::not_supported));
  return MakeUnexpected(std::make_error_code(std::errc::invalid_argument));
}

std::string_view AuthModeName(AuthMode m) noexcept {
  return m == AuthMode::kCurve ? "curve" : "hmac";
}

Expected<std::string> LoadAuthKey(const std::string& path) {
  std::string key;
  if (!path.empty()) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return MakeUnexpected(std::error_code(errno ? errno : ENOENT, std::generic_category()));
    std::stringstream ss;
    ss << f.rdbuf();
    key = ss.str();
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
  } else if (const char* e = std::getenv("SHMLINK_BRIDGE_AUTHKEY")) {
    key = e;
  }
  if (key.empty()) return MakeUnexpected(std::make_error_code(std::errc::invalid_argument));
  return key;
}

Net::~Net() {
  int zero = 0;
  for (void* s : {sock_, mon_, zap_}) {
    if (s != nullptr) {
      zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
      zmq_close(s);
    }
  }
  if (ctx_ != nullptr) zmq_ctx_term(ctx_);
}

Expected<void> Net::Setup(int type, const NetOptions& o) {
  ctx_ = zmq_ctx_new();
  if (ctx_ == nullptr) return ZmqError();
  sock_ = zmq_socket(ctx_, type);
  if (sock_ == nullptr) return ZmqError();
  auto set = [&](int opt, int v) { return zmq_setsockopt(sock_, opt, &v, sizeof v) == 0; };
  const int64_t maxsz = o.max_msg_size;
  bool ok = set(ZMQ_SNDHWM, o.send_hwm) && set(ZMQ_RCVHWM, o.recv_hwm) && set(ZMQ_LINGER, 0) &&
            set(ZMQ_RECONNECT_IVL, o.reconnect_ivl_ms) &&
            set(ZMQ_RECONNECT_IVL_MAX, o.reconnect_ivl_max_ms) &&
            set(ZMQ_HANDSHAKE_IVL, o.handshake_ivl_ms) &&
            // ZMTP heartbeats: a connection whose peer host vanished is closed in ~3 s, so
            // the DEALER reconnects instead of waiting for TCP to time out.
            set(ZMQ_HEARTBEAT_IVL, 1000) && set(ZMQ_HEARTBEAT_TIMEOUT, 3000) &&
            set(ZMQ_TCP_KEEPALIVE, 1) &&
            zmq_setsockopt(sock_, ZMQ_MAXMSGSIZE, &maxsz, sizeof maxsz) == 0;
  if (!ok) return ZmqError();
  if (zmq_socket_monitor(sock_, kMonitorEndpoint,
                         ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED |
                             ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                             ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                             ZMQ_EVENT_HANDSHAKE_SUCCEEDED) != 0) {
    return ZmqError();
  }
  mon_ = zmq_socket(ctx_, ZMQ_PAIR);
  if (mon_ == nullptr || zmq_connect(mon_, kMonitorEndpoint) != 0) return ZmqError();

  if (o.auth == AuthMode::kCurve) {
    auto server = DeriveKeyPair(o.authkey, "shmlink-bridge curve server key");
    auto client = DeriveKeyPair(o.authkey, "shmlink-bridge curve client key");
    if (!server || !client)
      return MakeUnexpected(std::make_error_code(std::errc::invalid_argument));
    if (server_) {
      // ZAP handler first: libzmq asks it about every CURVE client.
      zap_ = zmq_socket(ctx_, ZMQ_REP);
      if (zap_ == nullptr || zmq_bind(zap_, kZapEndpoint) != 0) return ZmqError();
      client_public_ = client->pub;
      if (!set(ZMQ_CURVE_SERVER, 1) ||
          zmq_setsockopt(sock_, ZMQ_CURVE_SECRETKEY, server->sec.c_str(), 40) != 0 ||
          zmq_setsockopt(sock_, ZMQ_ZAP_DOMAIN, "shmlink-bridge", 14) != 0) {
        return ZmqError();
      }
    } else {
      if (zmq_setsockopt(sock_, ZMQ_CURVE_SERVERKEY, server->pub.c_str(), 40) != 0 ||
          zmq_setsockopt(sock_, ZMQ_CURVE_PUBLICKEY, client->pub.c_str(), 40) != 0 ||
          zmq_setsockopt(sock_, ZMQ_CURVE_SECRETKEY, client->sec.c_str(), 40) != 0) {
        return ZmqError();
      }
    }
  }
  return {};
}

Expected<void> Net::Bind(const std::string& endpoint, const NetOptions& o) {
  server_ = true;
  if (auto r = Setup(ZMQ_ROUTER, o); !r) return r;
  const int one = 1;
  // MANDATORY: a send to a peer that is gone fails (EHOSTUNREACH) instead of vanishing;
  // HANDOVER: an importer that reconnects with the same routing id takes its place.
  if (zmq_setsockopt(sock_, ZMQ_ROUTER_MANDATORY, &one, sizeof one) != 0 ||
      zmq_setsockopt(sock_, ZMQ_ROUTER_HANDOVER, &one, sizeof one) != 0 ||
      zmq_bind(sock_, endpoint.c_str()) != 0) {
    return ZmqError();
  }
  return {};
}

Expected<void> Net::Connect(const std::string& endpoint, const std::string& id,
                            const NetOptions& o) {
  if (auto r = Setup(ZMQ_DEALER, o); !r) return r;
  const int one = 1;
  // IMMEDIATE: queue nothing for a connection that is not up (sends fail with EAGAIN).
  if (zmq_setsockopt(sock_, ZMQ_ROUTING_ID, id.data(), id.size()) != 0 ||
      zmq_setsockopt(sock_, ZMQ_IMMEDIATE, &one, sizeof one) != 0 ||
      zmq_connect(sock_, endpoint.c_str()) != 0) {
    return ZmqError();
  }
  return {};
}

int Net::DrainMonitor() {
  int failures = 0;
  for (;;) {
    zmq_msg_t ev, ep;
    zmq_msg_init(&ev);
    if (zmq_msg_recv(&ev, mon_, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&ev);
      break;
    }
    zmq_msg_init(&ep);
    if (zmq_msg_recv(&ep, mon_, 0) < 0 || zmq_msg_size(&ev) < 6) {
      zmq_msg_close(&ev);
      zmq_msg_close(&ep);
      break;
    }
    uint16_t event;
    int32_t value;
    std::memcpy(&event, zmq_msg_data(&ev), 2);
    std::memcpy(&value, static_cast<const char*>(zmq_msg_data(&ev)) + 2, 4);
    const std::string endpoint = FrameString(&ep);
    zmq_msg_close(&ev);
    zmq_msg_close(&ep);
    switch (event) {
      case ZMQ_EVENT_ACCEPTED:
        peer_by_fd_[value] = FdPeer(value);
        Log(LogLevel::kDebug, "connection from %s on %s", peer_by_fd_[value].c_str(),
            endpoint.c_str());
        break;
      case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        failures_in_a_row_ = 0;
        break;
      case ZMQ_EVENT_CONNECTED:
        Log(LogLevel::kInfo, "connected to %s", endpoint.c_str());
        break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        ++failures_in_a_row_;
        pending_failure_ = std::string("ZMTP handshake failed (not a bridge peer, or garbage: ") +
                           std::strerror(value) + ")";
        ++failures;
        break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        ++failures_in_a_row_;
        pending_failure_ = "ZMTP handshake failed: " + ProtocolErrorName(value);
        ++failures;
        break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        ++failures_in_a_row_;
        pending_failure_ = "authentication refused (ZAP status " + std::to_string(value) + ")";
        ++failures;
        break;
      case ZMQ_EVENT_DISCONNECTED: {
        std::string who = server_ ? "?" : endpoint;
        if (auto it = peer_by_fd_.find(value); it != peer_by_fd_.end()) {
          who = it->second;
          peer_by_fd_.erase(it);
        }
        if (!pending_failure_.empty()) {
          LogRefusal(who, pending_failure_);
          pending_failure_.clear();
        } else {
          Log(LogLevel::kDebug, "connection %s %s closed", server_ ? "from" : "to", who.c_str());
        }
        break;
      }
      default:
        break;
    }
  }
  if (!pending_failure_.empty() && !server_) {
    // A client sees no disconnect event for some failures: report at once.
    LogRefusal(std::string(), pending_failure_);
    pending_failure_.clear();
  }
  handshake_failures_ += failures;
  return failures;
}

void Net::LogRefusal(const std::string& who, const std::string& why) {
  const std::string host = who.substr(0, who.rfind(':'));
  Refusals& r = refusals_[host];
  const auto now = std::chrono::steady_clock::now();
  if (r.last_log != std::chrono::steady_clock::time_point{} &&
      now - r.last_log < std::chrono::seconds(10)) {
    ++r.suppressed;
    return;
  }
  char more[64] = "";
  if (r.suppressed > 0) {
    std::snprintf(more, sizeof more, " (and %llu more since the last report)",
                  static_cast<unsigned long long>(r.suppressed));
  }
  if (server_) {
    Log(LogLevel::kWarn, "refused connection from %s: %s%s", who.c_str(), why.c_str(), more);
  } else {
    Log(LogLevel::kWarn, "connection refused by the exporter: %s%s", why.c_str(), more);
  }
  r.last_log = now;
  r.suppressed = 0;
}

void Net::DrainZap() {
  if (zap_ == nullptr) return;
  for (;;) {
    // Request: version, request id, domain, address, routing id, mechanism, credentials.
    std::string frames[8];
    int n = 0;
    int more = 1;
    while (more) {
      zmq_msg_t m;
      zmq_msg_init(&m);
      if (zmq_msg_recv(&m, zap_, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
        zmq_msg_close(&m);
        if (n == 0) return;
        break;
      }
      if (n < 8) frames[n] = FrameString(&m);
      ++n;
      more = zmq_msg_more(&m);
      zmq_msg_close(&m);
    }
    bool ok = false;
    if (n >= 7 && frames[5] == "CURVE" && frames[6].size() == 32) {
      char z85[41] = {};
      zmq_z85_encode(z85, reinterpret_cast<const uint8_t*>(frames[6].data()), 32);
      ok = client_public_ == z85;
    }
    if (!ok) {
      Log(LogLevel::kWarn, "refused peer %s: its CURVE key is not the one of the shared authkey",
          n > 3 ? frames[3].c_str() : "?");
    }
    const std::string reply[6] = {
        "1.0", n > 1 ? frames[1] : "", ok ? "200" : "400", ok ? "OK" : "wrong key", "", ""};
    for (int i = 0; i < 6; ++i) {
      zmq_send(zap_, reply[i].data(), reply[i].size(), i < 5 ? ZMQ_SNDMORE : 0);
    }
  }
}

std::string PeerAddress(zmq_msg_t* msg) {
  const char* a = zmq_msg_gets(msg, "Peer-Address");
  return a != nullptr ? a : "?";
}

}  // namespace shmlink::bridge
