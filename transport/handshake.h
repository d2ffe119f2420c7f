// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The authentication handshake of Python's multiprocessing.connection, as a state machine
// over frames (no sockets here, so it can be fuzzed and unit-tested in one process).
//
// Order (same on every address family):
//   server (Listener.accept):  deliver challenge, then answer the client's challenge
//   client (Client):           answer the server's challenge, then deliver its own
//   deliver: send "#CHALLENGE#"+message; receive the answer; send "#WELCOME#" if it is
//            right, else "#FAILURE#" and fail with kAuthFailed.
//   answer:  receive "#CHALLENGE#"+message; send the MAC; receive "#WELCOME#" (anything
//            else fails with kAuthRejected).
//
// Two wire dialects, as in CPython:
//   kLegacy (3.11):  message = 20 random bytes, answer = HMAC-MD5 (16 bytes, no prefix)
//                    to every challenge, prefixed or not (what 3.11 does).
//   kModern (3.12+): message = "{sha256}" + 40 random bytes (the digest is configurable:
//                    md5, sha256, sha384, sha3_256, sha3_384); the MAC covers the whole
//                    message, prefix included; answer = "{name}" + MAC. A bare 16-byte
//                    MD5 answer is accepted (3.11 peers), and a 20-byte challenge is
//                    answered with bare MD5, exactly like CPython 3.12.
// A 3.11 peer answers a modern challenge with bare MD5 over the whole message, so kModern
// interoperates with both versions; kLegacy reproduces 3.11 byte for byte.
//
// Capability marker: a shmlink peer puts kShmlinkMarker at the start of the random part of
// its challenge (32 random bytes remain in modern mode, 12 in legacy mode). Python only
// MACs the bytes, so stock peers are unaffected; peer_is_shmlink() tells whether the other
// side did the same. Both sides know it once the handshake is done.
//
// Digests are compared with CRYPTO_memcmp (constant time); HMAC and randomness come from
// OpenSSL (HMAC, RAND_bytes).
#ifndef SHMLINK_TRANSPORT_HANDSHAKE_H_
#define SHMLINK_TRANSPORT_HANDSHAKE_H_

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <shmlink/expected.h>
#include <shmlink/transport_error.h>

namespace shmlink::transport {

inline constexpr std::string_view kChallengePrefix = "#CHALLENGE#";
inline constexpr std::string_view kWelcome = "#WELCOME#";
inline constexpr std::string_view kFailure = "#FAILURE#";
inline constexpr std::string_view kShmlinkMarker = "SHMLINK1";

enum class AuthDialect { kModern, kLegacy };

struct HandshakeOptions {
  AuthDialect dialect = AuthDialect::kModern;
  // Digest of our challenges in kModern: md5, sha256, sha384, sha3_256 or sha3_384.
  std::string digest = "sha256";
  // Put kShmlinkMarker into our challenge (false: look exactly like stock Python).
  bool advertise_shmlink = true;
};

enum class HandshakeRole { kServer, kClient };

using Bytes = std::vector<std::byte>;

// HMAC of `data` under `key` with digest `name` (one of the five above). kInvalidArgument
// for an unknown name. any-thread.
[[nodiscard]] Expected<Bytes> Hmac(std::string_view name, std::span<const std::byte> key,
                                   std::span<const std::byte> data);

// Python's _create_response: the answer to a challenge message (without "#CHALLENGE#").
// kProtocolError if the message has neither a legacy length nor a known {digest} prefix.
[[nodiscard]] Expected<Bytes> CreateResponse(std::span<const std::byte> key,
                                             std::span<const std::byte> message);
// Python's _verify_challenge (3.12 rules, accepting bare MD5). kAuthFailed if wrong,
// kProtocolError if the response is not parseable.
[[nodiscard]] Expected<void> VerifyResponse(std::span<const std::byte> key,
                                            std::span<const std::byte> message,
                                            std::span<const std::byte> response);

// not-thread-safe.
class Handshake {
 public:
  // kInvalidArgument for an empty key or an unknown digest.
  [[nodiscard]] static Expected<Handshake> Create(HandshakeRole role, std::string_view authkey,
                                                  const HandshakeOptions& options = {});

  // Frames to send first (the server's challenge; nothing for the client).
  [[nodiscard]] Expected<void> Start(std::vector<Bytes>* out);
  // Consumes one received frame; appends frames to send to *out. On an error, *out may
  // still hold a frame that must be sent before closing (#FAILURE#); the handshake is then
  // failed for good and every later call returns the same error.
  [[nodiscard]] Expected<void> OnFrame(std::span<const std::byte> frame, std::vector<Bytes>* out);

  bool done() const noexcept { return state_ == State::kDone; }
  bool failed() const noexcept { return static_cast<bool>(error_); }
  // Valid once done(): the peer's challenge carried kShmlinkMarker.
  bool peer_is_shmlink() const noexcept { return peer_is_shmlink_; }
  // Whether the peer's challenge/answer used the legacy (3.11) form. Diagnostic.
  bool peer_legacy() const noexcept { return peer_legacy_; }

 private:
  enum class State { kInit, kAwaitResponse, kAwaitChallenge, kAwaitWelcome, kDone };
  Handshake(HandshakeRole role, std::string key, HandshakeOptions options)
      : role_(role), key_(std::move(key)), options_(std::move(options)) {}
  Expected<void> Fail(std::error_code ec);
  Expected<void> MakeChallenge(std::vector<Bytes>* out);

  HandshakeRole role_;
  std::string key_;
  HandshakeOptions options_;
  State state_ = State::kInit;
  Bytes my_message_;  // challenge message we delivered (without "#CHALLENGE#")
  bool peer_is_shmlink_ = false;
  bool peer_legacy_ = false;
  std::error_code error_;
};

}  // namespace shmlink::transport

#endif  // SHMLINK_TRANSPORT_HANDSHAKE_H_
