// Copyright shmlink authors. SPDX-License-Identifier: MIT
// The challenge-response state machine, in process: both dialects, all digests, the
// capability marker, wrong keys, garbage. Interop with real Python is in
// python_interop_test.cc.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <shmlink/handshake.h>

namespace shmlink::transport {
namespace {

std::span<const std::byte> AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
std::string Hex(const Bytes& b) {
  static const char* k = "0123456789abcdef";
  std::string s;
  for (std::byte x : b) {
    s += k[std::to_integer<int>(x) >> 4];
    s += k[std::to_integer<int>(x) & 15];
  }
  return s;
}
std::string Str(const Bytes& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

TEST(Hmac, MatchesRfcVectors) {
  // RFC 2104 / RFC 4231 test case 2: key "Jefe".
  auto md5 = Hmac("md5", AsBytes("Jefe"), AsBytes("what do ya want for nothing?"));
  ASSERT_TRUE(md5);
  EXPECT_EQ(Hex(*md5), "750c783e6ab0b503eaa86e310a5db738");
  auto sha = Hmac("sha256", AsBytes("Jefe"), AsBytes("what do ya want for nothing?"));
  ASSERT_TRUE(sha);
  EXPECT_EQ(Hex(*sha), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(Hmac("sha1", AsBytes("k"), AsBytes("m")).error(),
            make_error_code(TransportErrc::kInvalidArgument));
}

struct Outcome {
  std::error_code server, client;
  bool server_sees_shmlink = false, client_sees_shmlink = false;
  bool server_done = false, client_done = false;
  std::vector<std::string> wire;  // every frame, in order
};

// Pumps frames between a server and a client machine until both stop.
Outcome RunPair(std::string_view skey, const HandshakeOptions& so, std::string_view ckey,
                const HandshakeOptions& co) {
  Outcome o;
  auto s = Handshake::Create(HandshakeRole::kServer, skey, so);
  auto c = Handshake::Create(HandshakeRole::kClient, ckey, co);
  EXPECT_TRUE(s && c);
  std::vector<Bytes> to_client, to_server;
  EXPECT_TRUE(s->Start(&to_client));
  EXPECT_TRUE(c->Start(&to_server));
  EXPECT_TRUE(to_server.empty());
  for (int round = 0; round < 10 && (!to_client.empty() || !to_server.empty()); ++round) {
    std::vector<Bytes> next_c, next_s;
    for (auto& f : to_client) {
      o.wire.push_back("S>" + Str(f));
      if (!c->failed() && !c->done()) {
        auto r = c->OnFrame(f, &next_s);
        if (!r) o.client = r.error();
      }
    }
    for (auto& f : to_server) {
      o.wire.push_back("C>" + Str(f));
      if (!s->failed() && !s->done()) {
        auto r = s->OnFrame(f, &next_c);
        if (!r) o.server = r.error();
      }
    }
    to_client = std::move(next_c);
    to_server = std::move(next_s);
  }
  o.server_done = s->done();
  o.client_done = c->done();
  o.server_sees_shmlink = s->peer_is_shmlink();
  o.client_sees_shmlink = c->peer_is_shmlink();
  return o;
}

HandshakeOptions Opts(AuthDialect d, std::string digest = "sha256", bool marker = true) {
  HandshakeOptions o;
  o.dialect = d;
  o.digest = std::move(digest);
  o.advertise_shmlink = marker;
  return o;
}

TEST(Handshake, ModernBothWaysEveryDigest) {
  for (const char* d : {"md5", "sha256", "sha384", "sha3_256", "sha3_384"}) {
    auto o = RunPair("key", Opts(AuthDialect::kModern, d), "key", Opts(AuthDialect::kModern, d));
    EXPECT_FALSE(o.server) << d << ": " << o.server.message();
    EXPECT_FALSE(o.client) << d << ": " << o.client.message();
    EXPECT_TRUE(o.server_done && o.client_done) << d;
    EXPECT_TRUE(o.server_sees_shmlink && o.client_sees_shmlink) << d;
    ASSERT_GE(o.wire.size(), 6u);
    EXPECT_EQ(o.wire[0].rfind("S>#CHALLENGE#{" + std::string(d) + "}", 0), 0u) << o.wire[0];
    EXPECT_EQ(o.wire[1].rfind("C>{" + std::string(d) + "}", 0), 0u);
    EXPECT_EQ(o.wire[2], "S>#WELCOME#");
    EXPECT_EQ(o.wire.back(), "C>#WELCOME#");  // the last frame travels client -> server
  }
}

TEST(Handshake, LegacyMessagesAreTwentyBytesAndBareMd5) {
  auto o = RunPair("key", Opts(AuthDialect::kLegacy), "key", Opts(AuthDialect::kLegacy));
  EXPECT_FALSE(o.server);
  EXPECT_FALSE(o.client);
  EXPECT_TRUE(o.server_done && o.client_done);
  EXPECT_EQ(o.wire[0].size(), 2 + 11 + 20u);
  EXPECT_EQ(o.wire[1].size(), 2 + 16u);
  EXPECT_TRUE(o.server_sees_shmlink && o.client_sees_shmlink);
}

TEST(Handshake, MixedDialectsInteroperate) {
  for (bool server_modern : {true, false}) {
    auto o = RunPair("k", Opts(server_modern ? AuthDialect::kModern : AuthDialect::kLegacy), "k",
                     Opts(server_modern ? AuthDialect::kLegacy : AuthDialect::kModern));
    EXPECT_FALSE(o.server) << server_modern;
    EXPECT_FALSE(o.client) << server_modern;
    EXPECT_TRUE(o.server_done && o.client_done);
  }
}

TEST(Handshake, MarkerOnlyWhenAdvertised) {
  auto o = RunPair("k", Opts(AuthDialect::kModern, "sha256", false), "k",
                   Opts(AuthDialect::kModern, "sha256", true));
  EXPECT_TRUE(o.server_done && o.client_done);
  EXPECT_TRUE(o.server_sees_shmlink);
  EXPECT_FALSE(o.client_sees_shmlink);
}

TEST(Handshake, WrongKeyFailsOnBothSides) {
  for (auto d : {AuthDialect::kModern, AuthDialect::kLegacy}) {
    auto o = RunPair("right", Opts(d), "wrong", Opts(d));
    EXPECT_EQ(o.server, make_error_code(TransportErrc::kAuthFailed));
    EXPECT_EQ(o.client, make_error_code(TransportErrc::kAuthRejected));
    EXPECT_FALSE(o.server_done || o.client_done);
    EXPECT_EQ(o.wire.back(), "S>#FAILURE#");
  }
}

TEST(Handshake, GarbageIsAProtocolErrorNeverACrash) {
  std::vector<Bytes> out;
  auto c = Handshake::Create(HandshakeRole::kClient, "k");
  ASSERT_TRUE(c->Start(&out));
  EXPECT_EQ(c->OnFrame(AsBytes("hello"), &out).error(),
            make_error_code(TransportErrc::kProtocolError));
  EXPECT_EQ(c->OnFrame(AsBytes("#CHALLENGE#x"), &out).error(),
            make_error_code(TransportErrc::kProtocolError));  // sticky
  auto c2 = Handshake::Create(HandshakeRole::kClient, "k");
  ASSERT_TRUE(c2->Start(&out));
  EXPECT_EQ(c2->OnFrame(AsBytes("#CHALLENGE#short"), &out).error(),
            make_error_code(TransportErrc::kProtocolError));
  auto c3 = Handshake::Create(HandshakeRole::kClient, "k");
  ASSERT_TRUE(c3->Start(&out));
  EXPECT_EQ(c3->OnFrame(AsBytes("#CHALLENGE#{sha1}0123456789012345678901234567890123456789"), &out)
                .error(),
            make_error_code(TransportErrc::kProtocolError));
  EXPECT_EQ(Handshake::Create(HandshakeRole::kServer, "").error(),
            make_error_code(TransportErrc::kInvalidArgument));
  EXPECT_EQ(
      Handshake::Create(HandshakeRole::kServer, "k", Opts(AuthDialect::kModern, "sha1")).error(),
      make_error_code(TransportErrc::kInvalidArgument));
}

TEST(Handshake, VerifyAcceptsLegacyMd5AnswerToModernChallenge) {
  // What a 3.11 client sends to a 3.12 server: bare HMAC-MD5 over the prefixed message.
  const std::string message = "{sha256}" + std::string(40, 'r');
  auto md5 = Hmac("md5", AsBytes("k"), AsBytes(message));
  ASSERT_TRUE(md5);
  EXPECT_TRUE(VerifyResponse(AsBytes("k"), AsBytes(message), *md5));
  auto wrong = Hmac("md5", AsBytes("other"), AsBytes(message));
  EXPECT_EQ(VerifyResponse(AsBytes("k"), AsBytes(message), *wrong).error(),
            make_error_code(TransportErrc::kAuthFailed));
}

}  // namespace
}  // namespace shmlink::transport
