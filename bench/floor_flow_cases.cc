// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Throughput floors: what any shared-memory transport between the same two pinned
// processes could at best do, doing the same work per message as shmlink-spsc's
// throughput case (the sender memcpy's the payload from a warm buffer into shared memory,
// the receiver reads every byte in place with TouchBytes) and nothing else:
//   floor-transfer (size >= 4096): a ring of fixed slots; each message is handed over on
//     its own (a sequence word next to the payload, release-stored after the copy; the
//     receiver acknowledges it by a release-stored counter on another line). The bulk
//     floor of a cross-core transfer of `size` bytes: unlike floor-memcpy, the bytes
//     cross from one core's cache to the other's.
//   floor-stream (size <= 4096): the textbook cached-index SPSC stream of fixed records:
//     head and tail on their own lines, each side caching the other's index and
//     publishing its own every B messages (B = min(32, max(1, 16 KiB / size)), the batch
//     shmlink-spsc's case uses). The floor of a small-message stream.
// Both use RingCapacityFor(size) bytes of slots/records, as the shmlink-spsc case does.
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "bench/cases.h"
#include "bench/harness.h"

namespace shmlink::bench {
namespace {

// The two sides' indices and flags, each on its own 128-byte pair of lines (adjacent-line
// prefetch), followed by the slots. Lives in an anonymous MAP_SHARED mapping.
struct FlowControl {
  alignas(128) std::atomic<uint64_t> head{0};  // messages the sender published
  alignas(128) std::atomic<uint64_t> tail{0};  // messages the receiver finished reading
  alignas(128) std::atomic<uint32_t> done{0};  // the sender stopped; head is final
};

class SharedMapping {
 public:
  explicit SharedMapping(size_t bytes)
      : bytes_(bytes),
        mem_(::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)) {}
  ~SharedMapping() {
    if (ok()) ::munmap(mem_, bytes_);
  }
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;
  bool ok() const { return mem_ != MAP_FAILED; }
  std::byte* data() const { return static_cast<std::byte*>(mem_); }

 private:
  size_t bytes_;
  void* mem_;
};

// The sender's room check: true once message m fits (fewer than `capacity` messages
// unread), refreshing its cached copy of tail; false if the receiver asked to stop first.
bool WaitForRoom(FlowControl* ctl, PairSync& sync, uint64_t m, uint64_t capacity,
                 uint64_t& tail_seen) {
  while (m - tail_seen >= capacity) {
    // SYNC(floor flow): acquire pairs with the receiver's release of tail: its reads of
    // the space we are about to overwrite are done.
    tail_seen = ctl->tail.load(std::memory_order_acquire);
    if (m - tail_seen < capacity) break;
    if (sync.StopRequested()) return false;
    CpuRelax();
  }
  return true;
}

// The receiver's window has closed: it acknowledges everything until the sender has
// stopped, so the sender never waits on it.
void AcknowledgeUntilDone(FlowControl* ctl) {
  while (ctl->done.load(std::memory_order_acquire) == 0) {
    // SYNC(floor flow): acquire head / release tail, as in the measured loop; nothing is
    // read from the slots any more.
    ctl->tail.store(ctl->head.load(std::memory_order_acquire), std::memory_order_release);
    CpuRelax();
  }
}

// floor-transfer: slot i = {sequence word, payload} at i * stride, payload 64-byte aligned.
std::string TransferRep(const BenchConfig& cfg, uint64_t size, ThroughputFigures* out) {
  const uint64_t stride = (64 + size + 63) / 64 * 64;
  const uint64_t slots = std::max<uint64_t>(2, RingCapacityFor(size) / stride);
  SharedMapping map(sizeof(FlowControl) + slots * stride);
  if (!map.ok()) return "mmap failed";
  auto* ctl = new (map.data()) FlowControl;
  std::byte* base = map.data() + sizeof(FlowControl);
  for (uint64_t i = 0; i < slots; ++i) new (base + i * stride) std::atomic<uint64_t>(0);
  auto seq_of = [&](uint64_t i) {
    return std::launder(reinterpret_cast<std::atomic<uint64_t>*>(base + (i % slots) * stride));
  };
  uint64_t count = 0, window_ns = 1, sink = 0;
  std::string err = RunPinnedPair(
      cfg,
      [&](PairSync& sync) -> int {
        sync.ArriveAndWait();
        ThroughputWindow window(cfg, 1);
        for (uint64_t m = 0;; ++m) {
          // SYNC(floor-transfer): acquire pairs with the sender's release of slot m's
          // sequence: its payload bytes are visible.
          while (seq_of(m)->load(std::memory_order_acquire) != m + 1) {
            if (ctl->done.load(std::memory_order_acquire) != 0 &&
                ctl->head.load(std::memory_order_acquire) <= m) {
              return 3;  // the sender stopped before the window closed
            }
            CpuRelax();
          }
          sink += TouchBytes(base + (m % slots) * stride + 64, size);
          // SYNC(floor-transfer): release: our reads of the slot happen-before the
          // sender's reuse of it (it acquires tail).
          ctl->tail.store(m + 1, std::memory_order_release);
          if (window.measuring()) ++count;
          if (window.Tick()) break;
        }
        window_ns = window.elapsed_ns();
        sync.RequestStop();
        AcknowledgeUntilDone(ctl);
        asm volatile("" : : "r"(sink));
        return 0;
      },
      [&](PairSync& sync) -> int {
        const std::vector<std::byte> src = PatternBuffer(size);
        sync.ArriveAndWait();
        uint64_t tail_seen = 0;
        for (uint64_t m = 0; !sync.StopRequested(); ++m) {
          if (!WaitForRoom(ctl, sync, m, slots, tail_seen)) break;
          std::memcpy(base + (m % slots) * stride + 64, src.data(), size);
          // SYNC(floor-transfer): release publishes the payload with the sequence.
          seq_of(m)->store(m + 1, std::memory_order_release);
          // Relaxed: head is only read after `done` (acquire/release below).
          ctl->head.store(m + 1, std::memory_order_relaxed);
        }
        // SYNC(floor-transfer): release: the final head happens-before `done` is seen.
        ctl->done.store(1, std::memory_order_release);
        return 0;
      });
  if (!err.empty()) return err;
  return ThroughputFromCount(count, size, window_ns, out);
}

// floor-stream: records of `size` bytes (rounded up to 8) back to back; head/tail
// published every `batch` messages, each side caching the other's index.
std::string StreamRep(const BenchConfig& cfg, uint64_t size, ThroughputFigures* out) {
  const uint64_t stride = (size + 7) / 8 * 8;
  const uint64_t records = std::max<uint64_t>(2, RingCapacityFor(size) / stride);
  const uint32_t batch = BatchFor(size);
  SharedMapping map(sizeof(FlowControl) + records * stride);
  if (!map.ok()) return "mmap failed";
  auto* ctl = new (map.data()) FlowControl;
  std::byte* base = map.data() + sizeof(FlowControl);
  uint64_t count = 0, window_ns = 1, sink = 0;
  std::string err = RunPinnedPair(
      cfg,
      [&](PairSync& sync) -> int {
        sync.ArriveAndWait();
        ThroughputWindow window(cfg, 256);
        uint64_t head_seen = 0, m = 0;
        for (;; ++m) {
          while (m == head_seen) {
            // SYNC(floor-stream): acquire pairs with the sender's release of head: the
            // records below it are visible.
            head_seen = ctl->head.load(std::memory_order_acquire);
            if (m == head_seen && ctl->done.load(std::memory_order_acquire) != 0) {
              head_seen = ctl->head.load(std::memory_order_acquire);
              if (m == head_seen) return 3;  // the sender stopped before the window closed
            }
            if (m == head_seen) CpuRelax();
          }
          sink += TouchBytes(base + (m % records) * stride, size);
          // SYNC(floor-stream): release: our reads of the records happen-before the
          // sender's reuse of their space (it acquires tail). Every `batch` messages.
          if ((m + 1) % batch == 0) ctl->tail.store(m + 1, std::memory_order_release);
          if (window.measuring()) ++count;
          if (window.Tick()) break;
        }
        window_ns = window.elapsed_ns();
        sync.RequestStop();
        AcknowledgeUntilDone(ctl);
        asm volatile("" : : "r"(sink));
        return 0;
      },
      [&](PairSync& sync) -> int {
        const std::vector<std::byte> src = PatternBuffer(size);
        sync.ArriveAndWait();
        uint64_t tail_seen = 0, m = 0;
        while (!sync.StopRequested()) {
          if (!WaitForRoom(ctl, sync, m, records, tail_seen)) break;
          std::memcpy(base + (m % records) * stride, src.data(), size);
          ++m;
          // SYNC(floor-stream): release publishes the records written since the last one.
          if (m % batch == 0) ctl->head.store(m, std::memory_order_release);
        }
        ctl->head.store(m, std::memory_order_release);
        ctl->done.store(1, std::memory_order_release);  // SYNC: after the final head
        return 0;
      });
  if (!err.empty()) return err;
  return ThroughputFromCount(count, size, window_ns, out);
}

}  // namespace

void RunFloorFlowCases(const BenchConfig& cfg, const Emit& emit) {
  for (uint64_t size : cfg.sizes) {
    if (size < 4096) continue;
    BenchRecord rec = ThroughputRecord("floor-transfer", size);
    RunThroughputReps(
        cfg, [&](ThroughputFigures* out) { return TransferRep(cfg, size, out); },
        "fixed slots, one message per hand-off: memcpy in, release a sequence word; the "
        "receiver reads every byte in place and releases a counter",
        rec);
    emit(rec);
  }
  for (uint64_t size : cfg.sizes) {
    if (size > 4096) continue;
    BenchRecord rec = ThroughputRecord("floor-stream", size);
    RunThroughputReps(
        cfg, [&](ThroughputFigures* out) { return StreamRep(cfg, size, out); },
        "cached-index SPSC stream of fixed records, head/tail published every B messages "
        "(the shmlink-spsc case's batch); memcpy in, every byte read in place",
        rec);
    emit(rec);
  }
}

}  // namespace shmlink::bench
