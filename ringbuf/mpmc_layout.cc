// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <bit>
#include <new>

#include <shmlink/mpmc_layout.h>

namespace shmlink {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kControlOffset = sizeof(SegmentHeader);
constexpr uint64_t kRegistryOffset = kControlOffset + sizeof(MpmcControl);
constexpr uint64_t kStatsOffset =
    AlignUp(kRegistryOffset + kMpmcRegistrySize * sizeof(MpmcRegistryEntry), 128);
constexpr uint64_t kSlotsOffset =
    AlignUp(kStatsOffset + kMpmcRegistrySize * sizeof(MpmcHandleStats), kPage);

bool ValidSlots(uint64_t n) {
  return std::has_single_bit(n) && n >= kMpmcMinSlots && n <= kMpmcMaxSlots;
}
bool ValidMax(uint64_t m) { return m >= 1 && m <= kMpmcMaxMessageSize; }

}  // namespace

Expected<uint64_t> MpmcSegmentSize(uint64_t slot_count, uint64_t max_message_size) {
  if (!ValidSlots(slot_count) || !ValidMax(max_message_size)) return RingErrc::kInvalidArgument;
  uint64_t bytes = 0;
  uint64_t total = 0;
  if (MulOverflows(slot_count, MpmcSlotStride(max_message_size), &bytes) ||
      AddOverflows(kSlotsOffset, bytes, &total) || total > Segment::kMaxSize) {
    return RingErrc::kInvalidArgument;
  }
  return total;
}

void InitMpmcSegment(const Segment& seg, uint64_t slot_count, uint64_t max_message_size) {
  const uint64_t geometry[8] = {slot_count,     max_message_size, MpmcSlotStride(max_message_size),
                                kControlOffset, kRegistryOffset,  kMpmcRegistrySize,
                                kSlotsOffset,   kStatsOffset};
  WriteHeader(seg.data(), SegmentKind::kMpmcQueue, seg.size(), geometry);
  new (seg.data() + kControlOffset) MpmcControl();
  for (uint32_t i = 0; i < kMpmcRegistrySize; ++i) {
    new (seg.data() + kRegistryOffset + i * sizeof(MpmcRegistryEntry)) MpmcRegistryEntry();
    new (seg.data() + kStatsOffset + i * sizeof(MpmcHandleStats)) MpmcHandleStats();
  }
  const uint64_t stride = MpmcSlotStride(max_message_size);
  for (uint64_t i = 0; i < slot_count; ++i) {
    auto* s = new (seg.data() + kSlotsOffset + i * stride) MpmcSlotHeader{};
    // Relaxed: nobody can see the segment before PublishHeader's release store.
    s->stamp.store(MakeStamp(i, 0, kSlotFree), std::memory_order_relaxed);
  }
  PublishHeader(seg.data());
}

Expected<MpmcGeometry> ValidateMpmcSegment(const Segment& seg) {
  auto fields = ValidateHeader(seg.data(), seg.size(), SegmentKind::kMpmcQueue);
  if (!fields) return MakeUnexpected(fields.error());
  const uint64_t* g = fields->geometry;
  if (!ValidSlots(g[0]) || !ValidMax(g[1]) || g[2] != MpmcSlotStride(g[1]) ||
      g[3] != kControlOffset || g[4] != kRegistryOffset || g[5] != kMpmcRegistrySize ||
      g[6] != kSlotsOffset || g[7] != kStatsOffset) {
    return RingErrc::kBadGeometry;
  }
  uint64_t bytes = 0;
  uint64_t total = 0;
  if (MulOverflows(g[0], g[2], &bytes) || AddOverflows(g[6], bytes, &total) ||
      total != fields->total_size) {
    return RingErrc::kBadGeometry;
  }
  MpmcGeometry out;
  out.slot_count = g[0];
  out.max_message_size = g[1];
  out.slot_stride = g[2];
  out.control_offset = g[3];
  out.registry_offset = g[4];
  out.slots_offset = g[6];
  out.stats_offset = g[7];
  out.total_size = total;
  out.creator = fields->creator;
  return out;
}

MpmcView MpmcViewOf(const Segment& seg, const MpmcGeometry& g) {
  MpmcView v;
  v.control = std::launder(reinterpret_cast<MpmcControl*>(seg.data() + g.control_offset));
  v.registry = std::launder(reinterpret_cast<MpmcRegistryEntry*>(seg.data() + g.registry_offset));
  v.stats = std::launder(reinterpret_cast<MpmcHandleStats*>(seg.data() + g.stats_offset));
  v.slots = seg.data() + g.slots_offset;
  v.slot_count = g.slot_count;
  v.mask = g.slot_count - 1;
  v.stride = g.slot_stride;
  v.max_message_size = g.max_message_size;
  return v;
}

}  // namespace shmlink
