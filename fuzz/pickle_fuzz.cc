// fuzz-srcs: transport/pickle_value.cc transport/pickle_decoder.cc
// fuzz-srcs: transport/pickle_encoder.cc transport/pickle_conversions.cc
// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// libFuzzer target for the pickle decoder: arbitrary bytes must decode to a Value or a
// typed error, never crash or trip a sanitizer; whatever decodes must encode (at a protocol
// chosen by the input) and decode back to an equal Value.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include <shmlink/pickle.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using shmlink::pickle::Decode;
  using shmlink::pickle::DecodeOptions;
  using shmlink::pickle::Encode;
  // Smaller budgets than the defaults keep each run fast (2^k shared-reference blow-ups).
  DecodeOptions opts;
  opts.max_values = 1 << 14;
  opts.max_bytes = 1 << 24;
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  auto v = Decode(in, opts);
  if (!v) {
    if (v.error().category().name() != std::string_view("shmlink.pickle")) std::abort();
    return 0;
  }
  const int protocol = 2 + static_cast<int>(size % 4);
  auto enc = Encode(*v, protocol);
  if (!enc) {
    std::fprintf(stderr, "encode failed: %s for %s\n", enc.error().message().c_str(),
                 v->ToString().c_str());
    std::abort();
  }
  auto back = Decode(*enc, opts);
  if (!back || !(*back == *v)) {
    std::fprintf(stderr, "round trip mismatch at protocol %d: %s\n", protocol,
                 v->ToString().c_str());
    std::abort();
  }
  (void)v->ToString();
  return 0;
}
