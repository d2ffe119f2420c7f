// fuzz-srcs: bridge/wire.cc
// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// libFuzzer target for the bridge's wire decoder (bridge/wire.h): whatever bytes arrive
// in a ZeroMQ message, decoding yields a header and records that lie inside the message,
// or a typed error; never a crash. A data body that validates is walked completely by
// RecordReader with every record inside the body, and re-encoding the records gives the
// same bytes back.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "bridge/wire.h"

using namespace shmlink::bridge;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> msg(reinterpret_cast<const std::byte*>(data), size);
  auto h = DecodeHeader(msg);
  if (!h) return 0;
  if (size < kWireHeaderSize) std::abort();
  std::byte again[kWireHeaderSize];
  EncodeHeader(*h, again);
  if (std::memcmp(again, data, kWireHeaderSize) != 0) std::abort();  // lossless header
  const auto body = msg.subspan(kWireHeaderSize);
  if (h->type == MsgType::kHello) {
    auto hello = DecodeHello(body);
    if (hello) {
      std::byte b[kHelloBodySize];
      EncodeHello(*hello, b);
      if (std::memcmp(b, body.data(), kHelloBodySize) != 0) std::abort();
    }
    return 0;
  }
  if (h->type != MsgType::kData) return 0;
  const bool valid = static_cast<bool>(RecordReader::Validate(body, h->count, UINT32_MAX));
  RecordReader r(body, h->count);
  std::vector<std::byte> rebuilt;
  uint32_t n = 0;
  for (;;) {
    auto rec = r.Next();
    if (!rec) break;
    const std::byte* p = rec->payload.data();
    if (!rec->payload.empty() &&
        (p < body.data() || p + rec->payload.size() > body.data() + body.size())) {
      std::abort();  // a record outside the message
    }
    const size_t off = rebuilt.size();
    rebuilt.resize(off + kRecordHeaderSize + rec->payload.size());
    EncodeRecord(rec->payload, rec->flags, rebuilt.data() + off);
    ++n;
  }
  if (valid) {
    if (n != h->count || !r.exhausted()) std::abort();
    if (rebuilt.size() != body.size() ||
        std::memcmp(rebuilt.data(), body.data(), body.size()) != 0) {
      std::abort();
    }
  }
  return 0;
}
