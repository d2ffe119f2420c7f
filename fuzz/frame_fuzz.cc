// fuzz-srcs: transport/frame.cc transport/transport_error.cc
// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// libFuzzer target for the Python-framing parser: arbitrary bytes fed in arbitrary chunks
// must yield frames or a typed error, never crash, never return a frame longer than the
// limit, and the chunking must not change the result.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include <shmlink/frame.h>

using shmlink::transport::FrameParser;
using shmlink::transport::TransportErrc;

namespace {

// Parses `data` fed in pieces of `chunk` bytes; returns the frames and the final error.
std::vector<std::vector<std::byte>> ParseAll(std::span<const std::byte> data, size_t chunk,
                                             uint64_t limit, std::error_code* err) {
  FrameParser parser(limit);
  std::vector<std::vector<std::byte>> frames;
  size_t pos = 0;
  for (;;) {
    auto f = parser.Next();
    if (f) {
      if (f->size() > limit) std::abort();
      frames.push_back(std::move(*f));
      continue;
    }
    if (f.error() != make_error_code(TransportErrc::kWouldBlock)) {
      *err = f.error();
      return frames;
    }
    if (pos == data.size()) break;
    const size_t n = std::min(chunk, data.size() - pos);
    parser.Feed(data.subspan(pos, n));
    pos += n;
  }
  *err = {};
  return frames;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t chunk = 1 + data[0] % 17;
  const uint64_t limit = data[1] < 128 ? 256 : (uint64_t{1} << (data[1] % 40));
  std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data + 2), size - 2);
  std::error_code e1, e2;
  auto a = ParseAll(input, chunk, limit, &e1);
  auto b = ParseAll(input, input.size() + 1, limit, &e2);
  if (a != b || e1 != e2) std::abort();  // chunking must not matter
  return 0;
}
