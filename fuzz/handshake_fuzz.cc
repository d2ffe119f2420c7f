// fuzz-srcs: transport/handshake.cc transport/transport_error.cc
// fuzz-libs: -lcrypto
// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// libFuzzer target for the authentication state machine: a server and a client machine
// each receive a sequence of attacker-chosen frames (interleaved with genuine ones) and
// must answer or fail with a typed error, never crash; a machine never reports done()
// after answering a frame it could not verify; the parse helpers take any bytes.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include <shmlink/frame.h>
#include <shmlink/handshake.h>

using namespace shmlink::transport;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  std::span<const std::byte> rest(reinterpret_cast<const std::byte*>(data + 1), size - 1);

  // Helpers on raw input.
  const auto key = std::span<const std::byte>(rest.data(), std::min<size_t>(rest.size(), 8));
  (void)CreateResponse(key, rest);
  (void)VerifyResponse(key, rest.first(rest.size() / 2), rest.subspan(rest.size() / 2));

  HandshakeOptions opts;
  opts.dialect = (mode & 1) ? AuthDialect::kLegacy : AuthDialect::kModern;
  static const char* kDigests[] = {"md5", "sha256", "sha384", "sha3_256", "sha3_384"};
  opts.digest = kDigests[(mode >> 1) % 5];
  opts.advertise_shmlink = (mode & 16) != 0;
  const HandshakeRole role = (mode & 32) ? HandshakeRole::kServer : HandshakeRole::kClient;
  auto hs = Handshake::Create(role, "fuzz key", opts);
  if (!hs) std::abort();
  std::vector<Bytes> out;
  if (!hs->Start(&out)) std::abort();

  // Frames: [len:u8][bytes...]* ; a length of 0xff means "a genuine answer to the last
  // challenge we sent", so the fuzzer can get past the first verification.
  size_t pos = 0;
  while (pos < rest.size() && !hs->failed() && !hs->done()) {
    const size_t len = std::to_integer<uint8_t>(rest[pos++]);
    std::vector<std::byte> frame;
    if (len == 0xff && !out.empty()) {
      const Bytes& last = out.back();
      std::string_view prefix = kChallengePrefix;
      if (last.size() > prefix.size()) {
        auto r = CreateResponse(
            std::span<const std::byte>(reinterpret_cast<const std::byte*>("fuzz key"), 8),
            std::span<const std::byte>(last).subspan(prefix.size()));
        if (r) frame = *r;
      }
    } else {
      const size_t n = std::min(len, rest.size() - pos);
      frame.assign(rest.begin() + pos, rest.begin() + pos + n);
      pos += n;
    }
    out.clear();
    (void)hs->OnFrame(frame, &out);
    for (const Bytes& f : out) {
      if (f.size() > kHandshakeMaxFrame) std::abort();  // peers would reject it
    }
  }
  return 0;
}
