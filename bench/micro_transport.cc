// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Micro-benchmarks of the transport's socket-free parts: Python framing (parsing a
// stream of frames) and a full two-way authentication handshake in process (legacy
// HMAC-MD5 as Python 3.11, and {sha256} as Python 3.12+).
#include <benchmark/benchmark.h>

#include <vector>

#include <shmlink/frame.h>
#include <shmlink/handshake.h>

namespace {

using namespace shmlink::transport;

std::vector<std::byte> FrameStream(size_t payload, size_t count) {
  std::vector<std::byte> out;
  std::byte hdr[kMaxFrameHeader];
  for (size_t i = 0; i < count; ++i) {
    const size_t n = EncodeFrameHeader(payload, hdr);
    out.insert(out.end(), hdr, hdr + n);
    out.insert(out.end(), payload, std::byte{'x'});
  }
  return out;
}

// Feeds 64 KiB chunks of a frame stream and takes every frame out in place.
void BM_FrameParse(benchmark::State& state) {
  const size_t payload = static_cast<size_t>(state.range(0));
  const size_t count = std::max<size_t>(1, (1 << 20) / (payload + 4));
  const std::vector<std::byte> stream = FrameStream(payload, count);
  FrameParser parser(1 << 30);
  for (auto _ : state) {
    size_t frames = 0;
    for (size_t pos = 0; pos < stream.size();) {
      const size_t n = std::min<size_t>(64 * 1024, stream.size() - pos);
      parser.Feed(std::span<const std::byte>(stream.data() + pos, n));
      pos += n;
      for (;;) {
        auto f = parser.Peek();
        if (!f) break;
        benchmark::DoNotOptimize(f->data());
        parser.Pop();
        ++frames;
      }
    }
    if (frames != count) state.SkipWithError("lost frames");
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * count));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * stream.size()));
}
BENCHMARK(BM_FrameParse)->Arg(64)->Arg(4096);

// One complete handshake (both challenge-response directions) between two machines.
void Handshake(benchmark::State& state, AuthDialect dialect) {
  HandshakeOptions opts;
  opts.dialect = dialect;
  for (auto _ : state) {
    auto s = Handshake::Create(HandshakeRole::kServer, "secret password", opts);
    auto c = Handshake::Create(HandshakeRole::kClient, "secret password", opts);
    std::vector<Bytes> to_c, to_s;
    (void)s->Start(&to_c);
    (void)c->Start(&to_s);
    while (!to_c.empty() || !to_s.empty()) {
      std::vector<Bytes> nc, ns;
      for (auto& f : to_c) (void)c->OnFrame(f, &ns);
      for (auto& f : to_s) (void)s->OnFrame(f, &nc);
      to_c = std::move(nc);
      to_s = std::move(ns);
    }
    if (!s->done() || !c->done()) state.SkipWithError("handshake failed");
  }
}
void BM_HandshakeLegacyMd5(benchmark::State& state) { Handshake(state, AuthDialect::kLegacy); }
void BM_HandshakeModernSha256(benchmark::State& state) { Handshake(state, AuthDialect::kModern); }
BENCHMARK(BM_HandshakeLegacyMd5);
BENCHMARK(BM_HandshakeModernSha256);

}  // namespace
