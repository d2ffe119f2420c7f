// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cstring>

#include <shmlink/handshake.h>

namespace shmlink::transport {
namespace {

constexpr size_t kLegacyMessageLength = 20;  // _MD5ONLY_MESSAGE_LENGTH
constexpr size_t kMd5DigestLength = 16;      // _MD5_DIGEST_LEN
constexpr size_t kModernMessageLength = 40;  // MESSAGE_LENGTH (3.12)
constexpr size_t kMaxDigestName = 8;         // _MAX_DIGEST_LEN

const EVP_MD* DigestByName(std::string_view name) {
  if (name == "md5") return EVP_md5();
  if (name == "sha256") return EVP_sha256();
  if (name == "sha384") return EVP_sha384();
  if (name == "sha3_256") return EVP_sha3_256();
  if (name == "sha3_384") return EVP_sha3_384();
  return nullptr;
}

std::span<const std::byte> AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

bool StartsWith(std::span<const std::byte> b, std::string_view prefix) {
  return b.size() >= prefix.size() && std::memcmp(b.data(), prefix.data(), prefix.size()) == 0;
}

bool Equals(std::span<const std::byte> b, std::string_view s) {
  return b.size() == s.size() && StartsWith(b, s);
}

Bytes ToBytes(std::string_view s) {
  auto b = AsBytes(s);
  return Bytes(b.begin(), b.end());
}

struct DigestAndPayload {
  std::string name;  // empty: legacy (bare MD5)
  std::span<const std::byte> payload;
};

// Python 3.12's _get_digest_name_and_payload.
Expected<DigestAndPayload> SplitDigest(std::span<const std::byte> message) {
  if (message.size() == kLegacyMessageLength || message.size() == kMd5DigestLength) {
    return DigestAndPayload{"", message};
  }
  if (!message.empty() && message[0] == std::byte{'{'}) {
    const size_t limit = std::min(message.size(), kMaxDigestName + 2);
    for (size_t i = 1; i < limit; ++i) {
      if (message[i] == std::byte{'}'}) {
        std::string_view name(reinterpret_cast<const char*>(message.data()) + 1, i - 1);
        if (DigestByName(name) == nullptr) break;
        return DigestAndPayload{std::string(name), message.subspan(i + 1)};
      }
    }
  }
  return TransportErrc::kProtocolError;
}

}  // namespace

Expected<Bytes> Hmac(std::string_view name, std::span<const std::byte> key,
                     std::span<const std::byte> data) {
  const EVP_MD* md = DigestByName(name);
  if (md == nullptr) return TransportErrc::kInvalidArgument;
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned int len = 0;
  static const unsigned char kEmpty = 0;
  const void* k = key.empty() ? &kEmpty : static_cast<const void*>(key.data());
  const unsigned char* d =
      data.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(data.data());
  if (HMAC(md, k, static_cast<int>(key.size()), d, data.size(), out.data(), &len) == nullptr) {
    return TransportErrc::kInvalidArgument;
  }
  Bytes r(len);
  std::memcpy(r.data(), out.data(), len);
  return r;
}

Expected<Bytes> CreateResponse(std::span<const std::byte> key, std::span<const std::byte> message) {
  auto split = SplitDigest(message);
  if (!split) return MakeUnexpected(split.error());
  if (split->name.empty()) return Hmac("md5", key, message);  // legacy: bare MD5
  auto mac = Hmac(split->name, key, message);                 // MAC covers the prefix too
  if (!mac) return mac;
  Bytes r = ToBytes("{" + split->name + "}");
  r.insert(r.end(), mac->begin(), mac->end());
  return r;
}

Expected<void> VerifyResponse(std::span<const std::byte> key, std::span<const std::byte> message,
                              std::span<const std::byte> response) {
  auto split = SplitDigest(response);
  if (!split) return MakeUnexpected(split.error());
  const std::string name = split->name.empty() ? "md5" : split->name;
  auto expected = Hmac(name, key, message);
  if (!expected) return MakeUnexpected(expected.error());
  if (expected->size() != split->payload.size() ||
      CRYPTO_memcmp(expected->data(), split->payload.data(), expected->size()) != 0) {
    return TransportErrc::kAuthFailed;
  }
  return {};
}

Expected<Handshake> Handshake::Create(HandshakeRole role, std::string_view authkey,
                                      const HandshakeOptions& options) {
  if (authkey.empty()) return TransportErrc::kInvalidArgument;
  if (options.dialect == AuthDialect::kModern && DigestByName(options.digest) == nullptr) {
    return TransportErrc::kInvalidArgument;
  }
  return Handshake(role, std::string(authkey), options);
}

Expected<void> Handshake::Fail(std::error_code ec) {
  error_ = ec;
  return MakeUnexpected(ec);
}

Expected<void> Handshake::MakeChallenge(std::vector<Bytes>* out) {
  const bool legacy = options_.dialect == AuthDialect::kLegacy;
  Bytes random(legacy ? kLegacyMessageLength : kModernMessageLength);
  if (RAND_bytes(reinterpret_cast<unsigned char*>(random.data()),
                 static_cast<int>(random.size())) != 1) {
    return Fail(std::make_error_code(std::errc::io_error));
  }
  if (options_.advertise_shmlink) {
    std::memcpy(random.data(), kShmlinkMarker.data(), kShmlinkMarker.size());
  } else if (StartsWith(random, kShmlinkMarker)) {
    random[0] ^= std::byte{0xff};  // never claim a capability we do not advertise
  }
  my_message_.clear();
  if (!legacy) my_message_ = ToBytes("{" + options_.digest + "}");
  my_message_.insert(my_message_.end(), random.begin(), random.end());
  Bytes frame = ToBytes(kChallengePrefix);
  frame.insert(frame.end(), my_message_.begin(), my_message_.end());
  out->push_back(std::move(frame));
  return {};
}

Expected<void> Handshake::Start(std::vector<Bytes>* out) {
  if (error_) return MakeUnexpected(error_);
  if (state_ != State::kInit) return Fail(make_error_code(TransportErrc::kBadState));
  if (role_ == HandshakeRole::kServer) {
    auto r = MakeChallenge(out);
    if (!r) return r;
    state_ = State::kAwaitResponse;
  } else {
    state_ = State::kAwaitChallenge;
  }
  return {};
}

Expected<void> Handshake::OnFrame(std::span<const std::byte> frame, std::vector<Bytes>* out) {
  if (error_) return MakeUnexpected(error_);
  const auto key = AsBytes(key_);
  switch (state_) {
    case State::kInit:
    case State::kDone:
      return Fail(make_error_code(TransportErrc::kProtocolError));

    case State::kAwaitResponse: {
      // We delivered a challenge; this is the peer's answer.
      auto ok = VerifyResponse(key, my_message_, frame);
      if (!ok) {
        out->push_back(ToBytes(kFailure));
        // A garbled answer is as much an authentication failure as a wrong one.
        return Fail(make_error_code(TransportErrc::kAuthFailed));
      }
      peer_legacy_ = peer_legacy_ || frame.size() == kMd5DigestLength;
      out->push_back(ToBytes(kWelcome));
      if (role_ == HandshakeRole::kServer) {
        state_ = State::kAwaitChallenge;
      } else {
        state_ = State::kDone;
      }
      return {};
    }

    case State::kAwaitChallenge: {
      if (!StartsWith(frame, kChallengePrefix)) {
        return Fail(make_error_code(TransportErrc::kProtocolError));
      }
      auto message = frame.subspan(kChallengePrefix.size());
      if (message.size() < kLegacyMessageLength) {
        return Fail(make_error_code(TransportErrc::kProtocolError));  // challenge too short
      }
      auto split = SplitDigest(message);
      if (!split) return Fail(split.error());
      peer_legacy_ = split->name.empty();
      peer_is_shmlink_ = StartsWith(split->payload, kShmlinkMarker);
      // 3.11 answers every challenge with bare HMAC-MD5; 3.12+ follows the prefix.
      auto response = options_.dialect == AuthDialect::kLegacy ? Hmac("md5", key, message)
                                                               : CreateResponse(key, message);
      if (!response) return Fail(response.error());
      out->push_back(std::move(*response));
      state_ = State::kAwaitWelcome;
      return {};
    }

    case State::kAwaitWelcome: {
      if (!Equals(frame, kWelcome)) return Fail(make_error_code(TransportErrc::kAuthRejected));
      if (role_ == HandshakeRole::kClient) {
        auto r = MakeChallenge(out);
        if (!r) return r;
        state_ = State::kAwaitResponse;
      } else {
        state_ = State::kDone;
      }
      return {};
    }
  }
  return Fail(make_error_code(TransportErrc::kProtocolError));
}

}  // namespace shmlink::transport
