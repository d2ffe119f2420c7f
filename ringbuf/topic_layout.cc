// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <new>

#include <shmlink/topic_layout.h>

namespace shmlink {
namespace {

constexpr uint64_t kPage = 4096;

uint64_t DataOffset(uint32_t max_subscribers) {
  return AlignUp(kTopicSlotsOffset + uint64_t{max_subscribers} * sizeof(TopicSlot), kPage);
}

bool ValidPolicy(TopicPolicy p) { return p == TopicPolicy::kBlock || p == TopicPolicy::kOverwrite; }

bool ValidParameters(const TopicGeometry& g) {
  if (!std::has_single_bit(g.capacity) || g.capacity < kTopicMinCapacity ||
      g.capacity > kTopicMaxCapacity) {
    return false;
  }
  if (g.max_message_size < 1 || g.max_message_size > TopicMaxMessageSizeLimit(g.capacity)) {
    return false;
  }
  if (g.max_subscribers < kTopicMinSubscribers || g.max_subscribers > kTopicMaxSubscribers) {
    return false;
  }
  // The publisher keeps `history` positions in memory: bounded here, so a hostile header
  // cannot make it allocate without limit.
  if (!ValidPolicy(g.policy) || g.history > kTopicMaxHistory ||
      g.history > g.capacity / kTopicRecordAlign) {
    return false;
  }
  const bool untyped = g.type_size == 0 && g.type_align == 0 && g.type_hash == 0;
  const bool typed = g.type_size != 0 && g.type_size <= g.max_message_size &&
                     std::has_single_bit(g.type_align) && g.type_align <= kTopicRecordAlign &&
                     g.type_size % g.type_align == 0 && g.type_hash != 0;
  return untyped || typed;
}

}  // namespace

Expected<uint64_t> TopicSegmentSize(const TopicGeometry& g) {
  if (!ValidParameters(g)) return RingErrc::kInvalidArgument;
  return DataOffset(g.max_subscribers) + g.capacity;
}

void InitTopicSegment(const Segment& seg, const TopicGeometry& g) {
  const uint64_t geometry[8] = {
      g.capacity,
      g.max_message_size,
      uint64_t{g.max_subscribers} | (uint64_t{static_cast<uint32_t>(g.policy)} << 32),
      g.history,
      uint64_t{g.type_size} | (uint64_t{g.type_align} << 32),
      g.type_hash,
      kTopicSlotsOffset,
      DataOffset(g.max_subscribers)};
  WriteHeader(seg.data(), SegmentKind::kTopic, seg.size(), geometry);
  std::byte* base = seg.data();
  new (base + sizeof(SegmentHeader)) TopicControl();
  for (uint32_t i = 0; i < g.max_subscribers; ++i) {
    new (base + kTopicSlotsOffset + i * sizeof(TopicSlot)) TopicSlot();
  }
  // The terminator of an empty log: nothing at position 0 yet, the next sequence is 0.
  // Relaxed: published by PublishHeader's release store.
  TopicSeqWord(base + geometry[7], 0).store(TopicWord(kTopicKindEnd, 0), std::memory_order_relaxed);
  PublishHeader(base);
}

Expected<TopicGeometry> ValidateTopicSegment(const Segment& seg) {
  auto fields = ValidateHeader(seg.data(), seg.size(), SegmentKind::kTopic);
  if (!fields) return MakeUnexpected(fields.error());
  const uint64_t* f = fields->geometry;
  TopicGeometry g;
  g.capacity = f[0];
  g.max_message_size = f[1];
  g.max_subscribers = static_cast<uint32_t>(f[2]);
  g.policy = static_cast<TopicPolicy>(static_cast<uint32_t>(f[2] >> 32));
  g.history = f[3];
  g.type_size = static_cast<uint32_t>(f[4]);
  g.type_align = static_cast<uint32_t>(f[4] >> 32);
  g.type_hash = f[5];
  g.slots_offset = f[6];
  g.data_offset = f[7];
  if (!ValidParameters(g) || g.slots_offset != kTopicSlotsOffset ||
      g.data_offset != DataOffset(g.max_subscribers)) {
    return RingErrc::kBadGeometry;
  }
  uint64_t total = 0;
  if (AddOverflows(g.data_offset, g.capacity, &total) || total != fields->total_size) {
    return RingErrc::kBadGeometry;
  }
  g.total_size = total;
  g.creator = fields->creator;
  return g;
}

TopicRegion TopicRegionOf(const Segment& seg, const TopicGeometry& g) {
  TopicRegion r;
  r.control = std::launder(reinterpret_cast<TopicControl*>(seg.data() + sizeof(SegmentHeader)));
  r.slots = std::launder(reinterpret_cast<TopicSlot*>(seg.data() + g.slots_offset));
  r.data = seg.data() + g.data_offset;
  r.geometry = g;
  return r;
}

}  // namespace shmlink
