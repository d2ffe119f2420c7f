// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <string>

#include <shmlink/transport_error.h>

namespace shmlink::transport {
namespace {

class TransportCategoryImpl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "shmlink.transport"; }
  std::string message(int ev) const override {
    switch (static_cast<TransportErrc>(ev)) {
      case TransportErrc::kMalformedFrame:
        return "malformed frame (invalid length header)";
      case TransportErrc::kFrameTooLarge:
        return "frame longer than the allowed maximum";
      case TransportErrc::kAuthFailed:
        return "authentication failed: digest received was wrong";
      case TransportErrc::kAuthRejected:
        return "authentication failed: digest sent was rejected";
      case TransportErrc::kProtocolError:
        return "handshake protocol error (unexpected message)";
      case TransportErrc::kHandshakeTimeout:
        return "handshake timed out";
      case TransportErrc::kClosed:
        return "connection closed by the peer (end of stream)";
      case TransportErrc::kPeerDead:
        return "peer died or dropped the connection";
      case TransportErrc::kTimedOut:
        return "timed out";
      case TransportErrc::kWouldBlock:
        return "operation would block";
      case TransportErrc::kInvalidAddress:
        return "invalid address";
      case TransportErrc::kAddressInUse:
        return "address in use by a live listener";
      case TransportErrc::kPeerNotAllowed:
        return "peer uid not allowed";
      case TransportErrc::kTooLarge:
        return "message larger than the connection's maximum message size";
      case TransportErrc::kBadState:
        return "call not valid in the connection's current state";
      case TransportErrc::kInvalidArgument:
        return "invalid argument";
    }
    return "unknown transport error " + std::to_string(ev);
  }
};

}  // namespace

const std::error_category& TransportCategory() noexcept {
  static const TransportCategoryImpl category;
  return category;
}

}  // namespace shmlink::transport
