// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// TransportErrc: the typed errors of the control path (framing, authentication,
// addresses, connections). They live in their own std::error_category
// ("shmlink.transport"); failed system calls are reported in std::system_category.
//
// For each code the comment says whether retrying the same call can help.
#ifndef SHMLINK_TRANSPORT_TRANSPORT_ERROR_H_
#define SHMLINK_TRANSPORT_TRANSPORT_ERROR_H_

#include <system_error>

namespace shmlink::transport {

enum class TransportErrc : int {
  kMalformedFrame = 1,  // Frame header invalid (negative length other than -1). No retry;
                        // the connection is closed.
  kFrameTooLarge,       // Frame longer than the receiver's limit (256 B in the handshake).
                        // No retry; the connection is closed.
  kAuthFailed,          // The peer's answer to our challenge was wrong (wrong key). No retry.
  kAuthRejected,        // The peer rejected our answer (#FAILURE#: wrong key). No retry.
  kProtocolError,       // Unexpected handshake message (not a challenge, unknown digest
                        // prefix, challenge too short, bad upgrade frame). No retry.
  kHandshakeTimeout,    // The peer did not complete the handshake in time. Retry may help.
  kClosed,              // The peer closed the connection in order and everything it sent
                        // was delivered (end of stream). No retry.
  kPeerDead,            // The peer died or dropped the connection without closing it
                        // (after everything committed was delivered). No retry.
  kTimedOut,            // A call with a timeout expired. Retry helps.
  kWouldBlock,          // try_ form: nothing to read / no room now. Retry helps.
  kInvalidAddress,      // Address string or family not understood. No retry.
  kAddressInUse,        // A live listener owns the socket path/port. Retry after it exits.
  kPeerNotAllowed,      // The peer's uid is not allowed (SO_PEERCRED). No retry.
  kTooLarge,            // Message larger than the connection's max_message_size(). No retry.
  kBadState,            // Call not valid now (closed connection, commit without reserve,
                        // release without peek). No retry.
  kInvalidArgument,     // Option out of range (empty authkey, unknown digest). No retry.
};

const std::error_category& TransportCategory() noexcept;

inline std::error_code make_error_code(TransportErrc e) noexcept {
  return {static_cast<int>(e), TransportCategory()};
}

// True for kAuthFailed and kAuthRejected: Python's AuthenticationError.
inline bool IsAuthError(const std::error_code& ec) noexcept {
  return ec == make_error_code(TransportErrc::kAuthFailed) ||
         ec == make_error_code(TransportErrc::kAuthRejected);
}

}  // namespace shmlink::transport

template <>
struct std::is_error_code_enum<shmlink::transport::TransportErrc> : std::true_type {};

#endif  // SHMLINK_TRANSPORT_TRANSPORT_ERROR_H_
