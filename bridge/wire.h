// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The bridge's wire format: what one ZeroMQ message between an exporting and an importing
// bridge holds. Pure encoding and decoding, no sockets (fuzzed by fuzz/bridge_wire_fuzz.cc).
//
// Every message starts with a 24-byte header, all integers little-endian:
//
//    0       4    5     6        8                16                24
//   +-------+----+-----+--------+----------------+----------------+
//   | "SLB1"| type| flags| count | a (u64)        | b (u64)        |  then the body
//   +-------+----+-----+--------+----------------+----------------+
//
//   type    a                         b                      body
//   kHello  -                         window (messages)      kind (u8), window bytes, resume
//                                                            exporter, session, seq (u64s)
//   kAuth   -                         -                      one handshake frame (HMAC mode)
//   kWelcome exporter instance id     session id             -
//   kData   sequence of the 1st record session id            `count` records (topic: the
//                                                            topic's own sequence numbers)
//   kAck    last sequence committed   session id             -
//   kNack   first sequence missing    session id             -
//   kHeartbeat -                      session id             -
//   kReset  -                         -                      reason text (re-handshake)
//   kEnd    sequence after the last   session id             - (ring: writer closed;
//                                                            topic: publisher closed)
//
// A kData record is an 8-byte header {u32 length, u32 flags} followed by `length` payload
// bytes (no padding). Record flag kRecordRedelivered: the message may have been delivered
// before (a queue message resent after a peer or bridge was lost).
//
// Thread safety: the functions are any-thread (no shared state).
#ifndef SHMLINK_BRIDGE_WIRE_H_
#define SHMLINK_BRIDGE_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include <shmlink/expected.h>

namespace shmlink::bridge {

inline constexpr uint32_t kWireMagic = 0x31424c53;  // "SLB1" read little-endian
inline constexpr size_t kWireHeaderSize = 24;
inline constexpr size_t kRecordHeaderSize = 8;
inline constexpr uint32_t kRecordRedelivered = 1;

enum class MsgType : uint8_t {
  kHello = 1,
  kAuth = 2,
  kWelcome = 3,
  kData = 4,
  kAck = 5,
  kNack = 6,
  kHeartbeat = 7,
  kReset = 8,
  kEnd = 9,
};

// What is carried: the kind of local object on both sides (must match).
enum class Kind : uint8_t { kRing = 1, kQueue = 2, kTopic = 3 };

struct WireHeader {
  MsgType type = MsgType::kHeartbeat;
  uint8_t flags = 0;
  uint16_t count = 0;
  uint64_t a = 0;
  uint64_t b = 0;
};

struct HelloBody {
  Kind kind = Kind::kRing;
  uint64_t window_bytes = 0;
  // Resume point of an importer that lost its session but not its memory: it committed
  // every message of `resume_session` of exporter `resume_exporter` up to `resume_seq`
  // (all 0: nothing to resume).
  uint64_t resume_exporter = 0;
  uint64_t resume_session = 0;
  uint64_t resume_seq = 0;
};
inline constexpr size_t kHelloBodySize = 33;

// Errors of decoding (std::errc values: the bridge only logs and drops).
//   bad_message: wrong magic, unknown type, truncated or inconsistent body.

// Writes a header into out[0..24). `out` must hold kWireHeaderSize bytes.
void EncodeHeader(const WireHeader& h, std::byte* out) noexcept;
// Parses and checks a whole message's header (magic, known type). Errors: bad_message.
[[nodiscard]] Expected<WireHeader> DecodeHeader(std::span<const std::byte> msg) noexcept;

void EncodeHello(const HelloBody& b, std::byte* out) noexcept;  // kHelloBodySize bytes
// Errors: bad_message (wrong size, unknown kind, zero window).
[[nodiscard]] Expected<HelloBody> DecodeHello(std::span<const std::byte> body) noexcept;

// Writes one record header + payload at `out` (kRecordHeaderSize + payload.size() bytes).
// Returns the bytes written.
size_t EncodeRecord(std::span<const std::byte> payload, uint32_t flags, std::byte* out) noexcept;

struct Record {
  std::span<const std::byte> payload;
  uint32_t flags = 0;
};

// Walks the records of a kData body. Next() yields `count` records, then fails; any
// truncation or trailing byte fails with bad_message. Reads in place (no copy).
class RecordReader {
 public:
  RecordReader(std::span<const std::byte> body, uint32_t count) noexcept
      : body_(body), left_(count) {}
  // The next record, or: bad_message (truncated), result_out_of_range (none left).
  [[nodiscard]] Expected<Record> Next() noexcept;
  // True if every record was read and no byte is left over.
  bool exhausted() const noexcept { return left_ == 0 && body_.empty(); }
  // Checks a whole body without delivering anything (all-or-nothing validation).
  [[nodiscard]] static Expected<void> Validate(std::span<const std::byte> body, uint32_t count,
                                               uint64_t max_payload) noexcept;

 private:
  std::span<const std::byte> body_;
  uint32_t left_;
};

// Little-endian helpers.
inline void PutU32(std::byte* p, uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = std::byte(v >> (8 * i));
}
inline void PutU64(std::byte* p, uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = std::byte(v >> (8 * i));
}
inline uint32_t GetU32(const std::byte* p) noexcept {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | std::to_integer<uint32_t>(p[i]);
  return v;
}
inline uint64_t GetU64(const std::byte* p) noexcept {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | std::to_integer<uint64_t>(p[i]);
  return v;
}

std::string_view MsgTypeName(MsgType t) noexcept;
std::string_view KindName(Kind k) noexcept;

}  // namespace shmlink::bridge

#endif  // SHMLINK_BRIDGE_WIRE_H_
