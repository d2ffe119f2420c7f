// Copyright shmlink authors. SPDX-License-Identifier: MIT
// Python multiprocessing framing: header forms, incremental parsing, limits, errors.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <shmlink/frame.h>

namespace shmlink::transport {
namespace {

std::vector<std::byte> B(std::initializer_list<int> v) {
  std::vector<std::byte> out;
  for (int x : v) out.push_back(static_cast<std::byte>(x));
  return out;
}

std::vector<std::byte> Frame(const std::string& payload) {
  std::byte hdr[kMaxFrameHeader];
  size_t n = EncodeFrameHeader(payload.size(), hdr);
  std::vector<std::byte> out(hdr, hdr + n);
  for (char c : payload) out.push_back(static_cast<std::byte>(c));
  return out;
}

std::string Str(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

TEST(FrameHeader, ShortFormIsBigEndianInt32) {
  std::byte hdr[kMaxFrameHeader];
  ASSERT_EQ(EncodeFrameHeader(0x01020304, hdr), 4u);
  EXPECT_EQ(std::vector<std::byte>(hdr, hdr + 4), B({1, 2, 3, 4}));
  ASSERT_EQ(EncodeFrameHeader(0x7fffffff, hdr), 4u);
  EXPECT_EQ(std::vector<std::byte>(hdr, hdr + 4), B({0x7f, 0xff, 0xff, 0xff}));
}

TEST(FrameHeader, LongFormAtTwoGiB) {
  std::byte hdr[kMaxFrameHeader];
  ASSERT_EQ(EncodeFrameHeader(0x80000000ull, hdr), 12u);
  EXPECT_EQ(std::vector<std::byte>(hdr, hdr + 12),
            B({0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0}));
}

TEST(FrameParser, ByteByByteFeedingYieldsFrames) {
  std::vector<std::byte> stream;
  for (const std::string& p :
       std::vector<std::string>{"", "a", "hello world", std::string(1000, 'x')}) {
    auto f = Frame(p);
    stream.insert(stream.end(), f.begin(), f.end());
  }
  FrameParser parser(1 << 20);
  std::vector<std::string> got;
  for (std::byte b : stream) {
    parser.Feed(std::span<const std::byte>(&b, 1));
    auto f = parser.Next();
    if (f) {
      got.push_back(Str(*f));
    } else {
      ASSERT_EQ(f.error(), make_error_code(TransportErrc::kWouldBlock));
    }
  }
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0], "");
  EXPECT_EQ(got[1], "a");
  EXPECT_EQ(got[2], "hello world");
  EXPECT_EQ(got[3], std::string(1000, 'x'));
  EXPECT_EQ(parser.buffered(), 0u);
}

TEST(FrameParser, LongFormHeaderAcceptedBelowLimit) {
  FrameParser parser(100);
  auto s = B({0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 3, 'a', 'b', 'c'});
  parser.Feed(s);
  auto f = parser.Next();
  ASSERT_TRUE(f);
  EXPECT_EQ(Str(*f), "abc");
}

TEST(FrameParser, OversizedFrameRejectedFromHeaderAloneAndSticky) {
  FrameParser parser(kHandshakeMaxFrame);
  auto f = Frame(std::string(257, 'x'));
  parser.Feed(std::span<const std::byte>(f.data(), 4));  // header only
  EXPECT_EQ(parser.Next().error(), make_error_code(TransportErrc::kFrameTooLarge));
  parser.Feed(Frame("ok"));
  EXPECT_EQ(parser.Next().error(), make_error_code(TransportErrc::kFrameTooLarge));
  FrameParser exact(kHandshakeMaxFrame);
  exact.Feed(Frame(std::string(256, 'y')));
  EXPECT_TRUE(exact.Next());
}

TEST(FrameParser, NegativeLengthOtherThanMinusOneIsMalformed) {
  FrameParser parser(1 << 20);
  parser.Feed(B({0xff, 0xff, 0xff, 0xfe, 0, 0}));
  EXPECT_EQ(parser.Next().error(), make_error_code(TransportErrc::kMalformedFrame));
  EXPECT_TRUE(parser.HasFrame());  // the pending error counts as something to report
}

TEST(FrameParser, HugeLongFormLengthIsTooLargeNotAnAllocation) {
  FrameParser parser(1 << 20);
  parser.Feed(B({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}));
  EXPECT_EQ(parser.Next().error(), make_error_code(TransportErrc::kFrameTooLarge));
}

TEST(FrameParser, PeekIsStableUntilPop) {
  FrameParser parser(1 << 20);
  parser.Feed(Frame("one"));
  parser.Feed(Frame("two"));
  auto a = parser.Peek();
  auto b = parser.Peek();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(Str(*a), "one");
  EXPECT_EQ(Str(*b), "one");
  parser.Pop();
  EXPECT_EQ(Str(*parser.Peek()), "two");
}

TEST(TransportError, CategoryAndMessages) {
  std::error_code ec = TransportErrc::kAuthFailed;
  EXPECT_STREQ(ec.category().name(), "shmlink.transport");
  EXPECT_NE(ec.message().find("digest received was wrong"), std::string::npos);
  EXPECT_TRUE(IsAuthError(ec));
  EXPECT_TRUE(IsAuthError(TransportErrc::kAuthRejected));
  EXPECT_FALSE(IsAuthError(TransportErrc::kClosed));
}

}  // namespace
}  // namespace shmlink::transport
