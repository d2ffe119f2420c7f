// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <atomic>
#include <bit>
#include <new>

#include <shmlink/holder_lock.h>
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
  r.index = index;
  return r;
}

bool SpscRoleDied(const Segment& segment, const SpscRegion& region, SpscRole role) noexcept {
  if (region.control == nullptr) return false;
  const bool producer = role == SpscRole::kProducer;
  std::atomic<uint64_t>& owner =
      producer ? region.control->producer_owner : region.control->consumer_owner;
  std::atomic<uint32_t>& epoch =
      producer ? region.control->producer_epoch : region.control->consumer_epoch;
  // SYNC(owner): seq_cst loads around the probe. A claimant takes the lock, then bumps the
  // epoch and stores its name; a holder that leaves clears its name, then drops the lock
  // (spsc_ring.cc). So a lock seen free between two reads of the same name and epoch means
  // that holder's lock went without its name being cleared: it died. (The probe is a
  // system call, which orders these loads on every architecture Linux supports; the
  // holder's stores are ordered with its own lock calls the same way.) A new claim in
  // between changes the epoch; a leave clears the name.
  const uint32_t e = epoch.load(std::memory_order_seq_cst);
  const uint64_t o = owner.load(std::memory_order_seq_cst);
  if (o == 0) return false;  // nobody holds the role: waiting for one is not a death
  const uint64_t slot =
      producer ? SpscProducerHolderSlot(region.index) : SpscConsumerHolderSlot(region.index);
  if (ProbeHolder(segment, slot) != HolderState::kDead) return false;  // alive or unknown
  return owner.load(std::memory_order_seq_cst) == o && epoch.load(std::memory_order_seq_cst) == e;
}

bool SpscSegmentUnheld(const Segment& segment, uint32_t ring_count) noexcept {
  return ProbeAnyHolder(segment, 0, SpscRoleHolderSlots(ring_count)) == HolderState::kDead &&
         ProbeHolder(segment, kCreatorHolderSlot) == HolderState::kDead;
}

}  // namespace shmlink
