// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "bridge/wire.h"

#include <system_error>

namespace shmlink::bridge {
namespace {

Unexpected Bad() noexcept { return MakeUnexpected(std::make_error_code(std::errc::bad_message)); }

bool KnownType(uint8_t t) noexcept {
  return t >= static_cast<uint8_t>(MsgType::kHello) && t <= static_cast<uint8_t>(MsgType::kEnd);
}

}  // namespace

void EncodeHeader(const WireHeader& h, std::byte* out) noexcept {
  PutU32(out, kWireMagic);
  out[4] = std::byte(static_cast<uint8_t>(h.type));
  out[5] = std::byte(h.flags);
  out[6] = std::byte(h.count & 0xff);
  out[7] = std::byte(h.count >> 8);
  PutU64(out + 8, h.a);
  PutU64(out + 16, h.b);
}

Expected<WireHeader> DecodeHeader(std::span<const std::byte> msg) noexcept {
  if (msg.size() < kWireHeaderSize) return Bad();
  if (GetU32(msg.data()) != kWireMagic) return Bad();
  const uint8_t t = std::to_integer<uint8_t>(msg[4]);
  if (!KnownType(t)) return Bad();
  WireHeader h;
  h.type = static_cast<MsgType>(t);
  h.flags = std::to_integer<uint8_t>(msg[5]);
  h.count = static_cast<uint16_t>(std::to_integer<uint16_t>(msg[6]) |
                                  (std::to_integer<uint16_t>(msg[7]) << 8));
  h.a = GetU64(msg.data() + 8);
  h.b = GetU64(msg.data() + 16);
  const size_t body = msg.size() - kWireHeaderSize;
  switch (h.type) {
    case MsgType::kHello:
      if (body != kHelloBodySize) return Bad();
      break;
    case MsgType::kAuth:
    case MsgType::kReset:
      if (body == 0 || body > 1024 || h.count != 0) return Bad();
      break;
    case MsgType::kData:
      if (h.count == 0 || body < kRecordHeaderSize * h.count) return Bad();
      break;
    default:  // control messages carry no body
      if (body != 0 || h.count != 0) return Bad();
      break;
  }
  return h;
}

void EncodeHello(const HelloBody& b, std::byte* out) noexcept {
  out[0] = std::byte(static_cast<uint8_t>(b.kind));
  PutU64(out + 1, b.window_bytes);
  PutU64(out + 9, b.resume_exporter);
  PutU64(out + 17, b.resume_session);
  PutU64(out + 25, b.resume_seq);
}

Expected<HelloBody> DecodeHello(std::span<const std::byte> body) noexcept {
  if (body.size() != kHelloBodySize) return Bad();
  const uint8_t k = std::to_integer<uint8_t>(body[0]);
  if (k < static_cast<uint8_t>(Kind::kRing) || k > static_cast<uint8_t>(Kind::kTopic)) {
    return Bad();
  }
  HelloBody b;
  b.kind = static_cast<Kind>(k);
  b.window_bytes = GetU64(body.data() + 1);
  b.resume_exporter = GetU64(body.data() + 9);
  b.resume_session = GetU64(body.data() + 17);
  b.resume_seq = GetU64(body.data() + 25);
  if (b.window_bytes == 0) return Bad();
  return b;
}

size_t EncodeRecord(std::span<const std::byte> payload, uint32_t flags, std::byte* out) noexcept {
  PutU32(out, static_cast<uint32_t>(payload.size()));
  PutU32(out + 4, flags);
  if (!payload.empty()) std::memcpy(out + kRecordHeaderSize, payload.data(), payload.size());
  return kRecordHeaderSize + payload.size();
}

Expected<Record> RecordReader::Next() noexcept {
  if (left_ == 0) return MakeUnexpected(std::make_error_code(std::errc::result_out_of_range));
  if (body_.size() < kRecordHeaderSize) return Bad();
  const uint32_t len = GetU32(body_.data());
  const uint32_t flags = GetU32(body_.data() + 4);
  if ((flags & ~kRecordRedelivered) != 0) return Bad();
  if (body_.size() - kRecordHeaderSize < len) return Bad();
  Record r{body_.subspan(kRecordHeaderSize, len), flags};
  body_ = body_.subspan(kRecordHeaderSize + len);
  --left_;
  return r;
}

Expected<void> RecordReader::Validate(std::span<const std::byte> body, uint32_t count,
                                      uint64_t max_payload) noexcept {
  RecordReader r(body, count);
  for (uint32_t i = 0; i < count; ++i) {
    auto rec = r.Next();
    if (!rec) return Bad();
    if (rec->payload.size() > max_payload) {
      return MakeUnexpected(std::make_error_code(std::errc::message_size));
    }
  }
  if (!r.exhausted()) return Bad();
  return {};
}

std::string_view MsgTypeName(MsgType t) noexcept {
  switch (t) {
    case MsgType::kHello:
      return "hello";
    case MsgType::kAuth:
      return "auth";
    case MsgType::kWelcome:
      return "welcome";
    case MsgType::kData:
      return "data";
    case MsgType::kAck:
      return "ack";
    case MsgType::kNack:
      return "nack";
    case MsgType::kHeartbeat:
      return "heartbeat";
    case MsgType::kReset:
      return "reset";
    case MsgType::kEnd:
      return "end";
  }
  return "?";
}

std::string_view KindName(Kind k) noexcept {
  switch (k) {
    case Kind::kRing:
      return "ring";
    case Kind::kQueue:
      return "queue";
    case Kind::kTopic:
      return "topic";
  }
  return "?";
}

}  // namespace shmlink::bridge
