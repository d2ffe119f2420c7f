// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Hardware floors the rings are judged against:
//   floor-cacheline (rtt, size 8): the two pinned processes ping-pong one 64-bit word in
//     one shared cache line, spinning: the cheapest possible cross-core round trip.
//   floor-memcpy (throughput, size 1 MiB): one core memcpy's a 1 MiB buffer into another
//     (both warm); bytes_per_s counts bytes copied. The bandwidth a single producer could
//     at best put into a ring.
#include <sys/mman.h>

#include <atomic>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "bench/cases.h"
#include "bench/harness.h"

namespace shmlink::bench {
namespace {

constexpr uint64_t kQuit = ~uint64_t{0};

std::string CachelineRep(const BenchConfig& cfg, std::vector<uint64_t>* samples) {
  void* mem = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return "mmap failed";
  // SYNC(floor): release stores / acquire loads, like a ring's index hand-off.
  auto* word = new (mem) std::atomic<uint64_t>(0);
  std::string err = RunPinnedPair(
      cfg,
      [&](PairSync& sync) -> int {
        samples->reserve(1 << 22);
        sync.ArriveAndWait();
        TimeRoundTrips(cfg, samples, [&](uint64_t i) {
          const uint64_t v = 2 * i + 1;  // odd: ours; the peer answers v + 1
          word->store(v, std::memory_order_release);
          while (word->load(std::memory_order_acquire) != v + 1) CpuRelax();
          return 0;
        });
        word->store(kQuit, std::memory_order_release);
        return 0;
      },
      [&](PairSync& sync) -> int {
        sync.ArriveAndWait();
        uint64_t last = 0;
        for (;;) {
          uint64_t v;
          while ((v = word->load(std::memory_order_acquire)) == last) CpuRelax();
          if (v == kQuit) return 0;
          last = v + 1;
          word->store(last, std::memory_order_release);
        }
      });
  ::munmap(mem, 4096);
  return err;
}

// The structural floor of a ring that signals with an index on its own line: each hop
// writes a 64-byte "record" line, then release-stores a "position" on another line; the
// receiver polls the position and then reads the record (two serialized line transfers
// per hop instead of one). Same sampling as CachelineRep.
std::string FlagDataRep(const BenchConfig& cfg, std::vector<uint64_t>* samples) {
  void* mem = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return "mmap failed";
  auto* base = static_cast<std::byte*>(mem);
  // Lines: 0 = a->b position, 1 = a->b record, 2 = b->a position, 3 = b->a record
  // (128 bytes apart against adjacent-line prefetch).
  auto* pos_ab = new (base) std::atomic<uint64_t>(0);
  auto* rec_ab = reinterpret_cast<volatile uint64_t*>(base + 128);
  auto* pos_ba = new (base + 256) std::atomic<uint64_t>(0);
  auto* rec_ba = reinterpret_cast<volatile uint64_t*>(base + 384);
  std::string err = RunPinnedPair(
      cfg,
      [&](PairSync& sync) -> int {
        samples->reserve(1 << 22);
        sync.ArriveAndWait();
        const int rc = TimeRoundTrips(cfg, samples, [&](uint64_t i) {
          const uint64_t v = i + 1;
          for (int k = 0; k < 8; ++k) rec_ab[k] = v;  // the record (one line)
          pos_ab->store(v, std::memory_order_release);
          while (pos_ba->load(std::memory_order_acquire) != v) CpuRelax();
          return rec_ba[0] != v ? 3 : 0;
        });
        if (rc != 0) return rc;
        pos_ab->store(kQuit, std::memory_order_release);
        return 0;
      },
      [&](PairSync& sync) -> int {
        sync.ArriveAndWait();
        for (uint64_t last = 0;;) {
          uint64_t v;
          while ((v = pos_ab->load(std::memory_order_acquire)) == last) CpuRelax();
          if (v == kQuit) return 0;
          last = v;
          const uint64_t got = rec_ab[0];
          for (int i = 0; i < 8; ++i) rec_ba[i] = got;
          pos_ba->store(v, std::memory_order_release);
        }
      });
  ::munmap(mem, 4096);
  return err;
}

double MemcpyRep(const BenchConfig& cfg, size_t size) {
  std::vector<std::byte> src = PatternBuffer(size), dst(size);
  const uint64_t warm_end = NowNs() + WarmupNs(cfg);
  while (NowNs() < warm_end) std::memcpy(dst.data(), src.data(), size);
  uint64_t copies = 0;
  const uint64_t start = NowNs();
  uint64_t now = start;
  while (now - start < MeasureNs(cfg)) {
    std::memcpy(dst.data(), src.data(), size);
    asm volatile("" : : "r"(dst.data()) : "memory");  // the copy is not dead
    ++copies;
    now = NowNs();
  }
  return static_cast<double>(copies) * 1e9 / static_cast<double>(now - start);
}

}  // namespace

void RunFloorCases(const BenchConfig& cfg, const Emit& emit) {
  {
    BenchRecord rec = RttRecord("floor-cacheline", 8);
    RunRttReps(
        cfg, [&](std::vector<uint64_t>* samples) { return CachelineRep(cfg, samples); },
        "one shared cache line ping-ponged between the two pinned processes", rec);
    emit(rec);
  }
  {
    // Variant: the two-line (position + record) floor of index-signalled rings.
    BenchRecord rec = RttRecord("floor-cacheline:position+record", 64);
    RunRttReps(
        cfg, [&](std::vector<uint64_t>* samples) { return FlagDataRep(cfg, samples); },
        "per hop: write a record line, release-store a position line; peer polls "
        "the position then reads the record",
        rec);
    emit(rec);
  }
  {
    const size_t size = 1 << 20;
    BenchRecord rec;  // one core copying: no producer/consumer pair
    rec.system = "floor-memcpy";
    rec.pattern = "throughput";
    rec.size = size;
    PinToCpu(cfg.cpu_a);
    RunThroughputReps(
        cfg,
        [&](ThroughputFigures* out) {
          out->msgs_per_s = MemcpyRep(cfg, size);
          out->bytes_per_s = out->msgs_per_s * static_cast<double>(size);
          return std::string();
        },
        "single core, warm 1 MiB memcpy; bytes copied per second", rec);
    emit(rec);
  }
}

}  // namespace shmlink::bench
