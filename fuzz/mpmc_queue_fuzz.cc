// fuzz-srcs: ringbuf/mpmc_queue.cc ringbuf/mpmc_layout.cc ringbuf/segment.cc
// fuzz-srcs: ringbuf/segment_header.cc ringbuf/process_identity.cc ringbuf/ring_error.cc
// fuzz-srcs: ringbuf/futex.cc ringbuf/mpmc_handle.cc ringbuf/log.cc
// fuzz-srcs: ringbuf/holder_lock.cc
// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// A hostile peer scribbles on a live MPMC queue: the input overwrites stamps, lengths,
// positions and registry words of a valid queue, then push/pop/claim/recover/stats run.
// They must return values or errors and never read or write out of bounds or hang.
// (Header hostility is covered by tests/mpmc; the header is validated before use.)
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <shmlink/mpmc_queue.h>

using namespace shmlink;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto queue = MpmcQueue::CreateAnonymous(8, 48);
  if (!queue) return 0;
  const Segment& seg = queue->segment();
  auto g = ValidateMpmcSegment(seg);
  if (!g) return 0;
  MpmcView v = MpmcViewOf(seg, *g);
  // Reset to a clean state, then apply the input as (offset, 8-byte value) patches into
  // the control block, the first registry entries and the slots.
  std::memset(v.control, 0, sizeof(MpmcControl));
  for (uint32_t i = 0; i < kMpmcRegistrySize; ++i) v.registry[i].owner.store(0);
  for (uint64_t i = 0; i < v.slot_count; ++i) {
    auto* s = reinterpret_cast<MpmcSlotHeader*>(v.slots + i * v.stride);
    s->stamp.store(MakeStamp(i, 0, kSlotFree));
    s->length = 0;
  }
  auto tx = queue->Producer();
  auto rx = queue->Consumer();
  if (!tx || !rx) return 0;
  std::byte* regions[3] = {reinterpret_cast<std::byte*>(v.control),
                           reinterpret_cast<std::byte*>(v.registry + 2), v.slots};
  const size_t region_size[3] = {sizeof(MpmcControl), 4 * sizeof(MpmcRegistryEntry),
                                 v.slot_count * v.stride};
  size_t i = 0;
  for (; i + 11 <= size && i < 11 * 24; i += 11) {
    const uint32_t which = data[i] % 3;
    const uint16_t off = static_cast<uint16_t>(data[i + 1] | (data[i + 2] << 8));
    const size_t at = (off % (region_size[which] / 8)) * 8;
    std::memcpy(regions[which] + at, data + i + 3, 8);
  }
  std::byte buf[64];
  for (; i < size; ++i) {
    switch (data[i] % 6) {
      case 0:
        (void)tx->try_push({buf, static_cast<size_t>(data[i] % 49)});
        break;
      case 1:
        (void)rx->try_pop(buf);
        break;
      case 2: {
        auto m = rx->try_claim();
        if (m) {
          volatile uint8_t sink = 0;
          for (std::byte b : m->data) sink = sink + static_cast<uint8_t>(b);
          (void)rx->release();
        }
        break;
      }
      case 3: {
        auto sp = tx->try_claim(data[i] % 49);
        if (sp) {
          std::memset(sp->data(), 0xab, sp->size());
          if (data[i] & 1)
            (void)tx->publish();
          else
            tx->abort();
        }
        break;
      }
      case 4:
        (void)queue->stats();
        break;
      case 5:
        (void)queue->RecoverDead();
        break;
    }
  }
  return 0;
}
