// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The bridge's wire format (bridge/wire.h): round trips and the malformed inputs the
// decoder must refuse with a typed error.
#include "bridge/wire.h"

#include <gtest/gtest.h>

#include <string_view>
#include <vector>

namespace shmlink::bridge {
namespace {

std::vector<std::byte> Message(const WireHeader& h, std::vector<std::byte> body = {}) {
  std::vector<std::byte> m(kWireHeaderSize);
  EncodeHeader(h, m.data());
  m.insert(m.end(), body.begin(), body.end());
  return m;
}

std::vector<std::byte> Records(const std::vector<std::string_view>& payloads, uint32_t flags = 0) {
  std::vector<std::byte> out;
  for (auto p : payloads) {
    const size_t off = out.size();
    out.resize(off + kRecordHeaderSize + p.size());
    EncodeRecord(std::as_bytes(std::span(p.data(), p.size())), flags, out.data() + off);
  }
  return out;
}

TEST(BridgeWireTest, DataRoundTrip) {
  auto body = Records({"hello", "", "world"}, kRecordRedelivered);
  auto m = Message({MsgType::kData, 0, 3, 42, 7}, body);
  auto h = DecodeHeader(m);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->type, MsgType::kData);
  EXPECT_EQ(h->count, 3);
  EXPECT_EQ(h->a, 42u);
  EXPECT_EQ(h->b, 7u);
  auto span = std::span<const std::byte>(m).subspan(kWireHeaderSize);
  ASSERT_TRUE(RecordReader::Validate(span, 3, 100));
  RecordReader r(span, 3);
  for (std::string_view want : {"hello", "", "world"}) {
    auto rec = r.Next();
    ASSERT_TRUE(rec);
    EXPECT_EQ(
        std::string_view(reinterpret_cast<const char*>(rec->payload.data()), rec->payload.size()),
        want);
    EXPECT_EQ(rec->flags, kRecordRedelivered);
  }
  EXPECT_TRUE(r.exhausted());
  EXPECT_FALSE(r.Next());
}

TEST(BridgeWireTest, HelloRoundTrip) {
  std::byte b[kHelloBodySize];
  EncodeHello({Kind::kQueue, 1 << 20, 7, 3, 99}, b);
  auto h = DecodeHello(b);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->kind, Kind::kQueue);
  EXPECT_EQ(h->window_bytes, 1u << 20);
  EXPECT_EQ(h->resume_exporter, 7u);
  EXPECT_EQ(h->resume_session, 3u);
  EXPECT_EQ(h->resume_seq, 99u);
  b[0] = std::byte{9};  // unknown kind
  EXPECT_FALSE(DecodeHello(b));
}

TEST(BridgeWireTest, RefusesMalformedMessages) {
  const auto bad = std::make_error_code(std::errc::bad_message);
  EXPECT_EQ(DecodeHeader(std::vector<std::byte>(10)).error(), bad);  // short
  auto m = Message({MsgType::kAck, 0, 0, 1, 1});
  m[0] = std::byte{'X'};  // magic
  EXPECT_EQ(DecodeHeader(m).error(), bad);
  m = Message({MsgType::kAck, 0, 0, 1, 1});
  m[4] = std::byte{77};  // unknown type
  EXPECT_EQ(DecodeHeader(m).error(), bad);
  m = Message({MsgType::kAck, 0, 0, 1, 1}, {std::byte{1}});  // body on a control message
  EXPECT_EQ(DecodeHeader(m).error(), bad);
  m = Message({MsgType::kData, 0, 0, 1, 1});  // data without records
  EXPECT_EQ(DecodeHeader(m).error(), bad);
  // Record length past the end, trailing bytes, unknown record flag.
  auto body = Records({"abc"});
  body[0] = std::byte{200};
  EXPECT_FALSE(RecordReader::Validate(body, 1, 1000));
  body = Records({"abc"});
  body.push_back(std::byte{0});
  EXPECT_FALSE(RecordReader::Validate(body, 1, 1000));
  body = Records({"abc"}, 4);
  EXPECT_FALSE(RecordReader::Validate(body, 1, 1000));
  // Larger than the receiver accepts.
  EXPECT_EQ(RecordReader::Validate(Records({"abcdef"}), 1, 3).error(),
            std::make_error_code(std::errc::message_size));
}

}  // namespace
}  // namespace shmlink::bridge
