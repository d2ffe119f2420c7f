// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <bit>
#include <new>

#include <shmlink/spsc_layout.h>

namespace shmlink {
namespace {

constexpr uint64_t kPage = 4096;

bool ValidCapacity(uint64_t capacity) {
  return std::has_single_bit(capacity) && capacity >= kSpscMinCapacity &&
         capacity <= kSpscMaxCapacity;
}

uint64_t DataOffset(uint32_t ring_count) {
  return AlignUp(sizeof(SegmentHeader) + uint64_t{ring_count} * sizeof(SpscControl), kPage);
}

}  // namespace

Expected<uint64_t> SpscSegmentSize(uint32_t ring_count, uint64_t capacity) {
  if (ring_count < 1 || ring_count > 2 || !ValidCapacity(capacity)) {
    return RingErrc::kInvalidArgument;
  }
  return DataOffset(ring_count) + uint64_t{ring_count} * capacity;
}

void InitSpscSegment(const Segment& seg, SegmentKind kind, uint32_t ring_count, uint64_t capacity) {
  const uint64_t geometry[8] = {
      ring_count, capacity, sizeof(SegmentHeader), sizeof(SpscControl), DataOffset(ring_count), 0,
      0,          0};
  WriteHeader(seg.data(), kind, seg.size(), geometry);
  for (uint32_t i = 0; i < ring_count; ++i) {
    new (seg.data() + sizeof(SegmentHeader) + i * sizeof(SpscControl)) SpscControl();
  }
  PublishHeader(seg.data());
}

Expected<SpscGeometry> ValidateSpscSegment(const Segment& seg, SegmentKind kind,
                                           uint32_t ring_count) {
  auto fields = ValidateHeader(seg.data(), seg.size(), kind);
  if (!fields) return MakeUnexpected(fields.error());
  const uint64_t* g = fields->geometry;
  if (g[0] != ring_count || !ValidCapacity(g[1]) || g[2] != sizeof(SegmentHeader) ||
      g[3] != sizeof(SpscControl) || g[4] != DataOffset(ring_count) || g[5] != 0 || g[6] != 0 ||
      g[7] != 0) {
    return RingErrc::kBadGeometry;
  }
  uint64_t rings_bytes = 0;
  uint64_t total = 0;
  if (MulOverflows(g[1], ring_count, &rings_bytes) || AddOverflows(g[4], rings_bytes, &total) ||
      total != fields->total_size) {
    return RingErrc::kBadGeometry;
  }
  return SpscGeometry{ring_count, g[1], g[2], g[4], total, fields->creator};
}

SpscRegion SpscRegionAt(const Segment& seg, const SpscGeometry& g, uint32_t index) {
  SpscRegion r;
  r.control = std::launder(
      reinterpret_cast<SpscControl*>(seg.data() + g.control_offset + index * sizeof(SpscControl)));
  r.data = seg.data() + g.data_offset + index * g.capacity;
  r.capacity = g.capacity;
  return r;
}

}  // namespace shmlink
