// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// In-process micro-benchmarks of the SPSC ring (Google Benchmark): the CPU cost of each
// operation with no peer on another core. Cross-process figures are ring_throughput's.
//
//   bazel run -c opt //bench:micro -- --benchmark_filter=Spsc --benchmark_format=json
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include <shmlink/segment_header.h>
#include <shmlink/spsc_layout.h>
#include <shmlink/spsc_ring.h>

namespace shmlink {
namespace {

std::string MicroName(const char* tag) {
  static int n = 0;
  return "/shmlink-micro-" + std::string(tag) + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(n++);
}

struct Pair {
  explicit Pair(const char* tag, uint64_t capacity = 1 << 20)
      : ring(SpscRing::Create(MicroName(tag), capacity).value()),
        tx(ring.Producer().value()),
        rx(ring.Consumer().value()) {}
  void Drain() {
    while (rx.try_peek()) rx.release();
  }
  SpscRing ring;
  SpscProducer tx;
  SpscConsumer rx;
};

// One reserve + commit (the producer's whole hot path) of state.range(0) bytes.
void BM_SpscReserveCommit(benchmark::State& state) {
  Pair p("rc");
  const size_t n = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    auto buf = p.tx.try_reserve(n);
    if (!buf) {  // full: drain outside the timed region, then retry
      state.PauseTiming();
      p.Drain();
      state.ResumeTiming();
      buf = p.tx.try_reserve(n);
    }
    benchmark::DoNotOptimize(buf->data());
    p.tx.commit();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SpscReserveCommit)->Arg(64)->Arg(4096);

// One peek + release of a state.range(0)-byte message (the consumer's hot path).
void BM_SpscPeekRelease(benchmark::State& state) {
  Pair p("pr");
  const size_t n = static_cast<size_t>(state.range(0));
  auto refill = [&] {
    while (p.tx.try_reserve(n)) {
    }
    p.tx.commit();
  };
  refill();
  for (auto _ : state) {
    auto m = p.rx.try_peek();
    if (!m) {
      state.PauseTiming();
      refill();
      state.ResumeTiming();
      m = p.rx.try_peek();
    }
    benchmark::DoNotOptimize(m->data());
    p.rx.release();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SpscPeekRelease)->Arg(64)->Arg(4096);

// try_send + try_recv: the copying conveniences, both copies included.
void BM_SpscSendRecvCopy(benchmark::State& state) {
  Pair p("sr");
  const size_t n = static_cast<size_t>(state.range(0));
  std::vector<std::byte> src(n, std::byte{1}), dst(n);
  for (auto _ : state) {
    if (!p.tx.try_send(src)) state.SkipWithError("send failed");
    auto got = p.rx.try_recv(dst);
    benchmark::DoNotOptimize(got);
    benchmark::DoNotOptimize(dst.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(n));
}
BENCHMARK(BM_SpscSendRecvCopy)->Arg(64)->Arg(4096);

// Validating header + geometry of a mapped segment (what every attach does in memory).
void BM_SpscValidateHeader(benchmark::State& state) {
  auto ring = SpscRing::Create(MicroName("val"), 1 << 16);
  for (auto _ : state) {
    auto g = ValidateSpscSegment(ring->segment(), SegmentKind::kSpscRing, 1);
    benchmark::DoNotOptimize(g);
  }
}
BENCHMARK(BM_SpscValidateHeader);

// A whole attach by name: shm_open + fstat + mmap + validation + munmap/close.
void BM_SpscAttachByName(benchmark::State& state) {
  const std::string name = MicroName("att");
  auto ring = SpscRing::Create(name, 1 << 16);
  for (auto _ : state) {
    auto a = SpscRing::Attach(name);
    if (!a) state.SkipWithError("attach failed");
    benchmark::DoNotOptimize(a);
  }
}
BENCHMARK(BM_SpscAttachByName);

}  // namespace
}  // namespace shmlink
