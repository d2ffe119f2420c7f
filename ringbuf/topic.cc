// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <sys/mman.h>

#include <string>

#include <shmlink/holder_lock.h>
#include <shmlink/process_identity.h>
#include <shmlink/topic.h>
#include <shmlink/topic_liveness.h>

namespace shmlink {

namespace {

// A topic whose creator is gone and whose roles nobody holds (the kernel says so) can be
// replaced. Unknown is not dead: a probe that cannot decide keeps the segment.
bool IsStaleTopic(std::string_view name) {
  auto seg = Segment::Open(name);
  if (!seg) return false;
  auto g = ValidateTopicSegment(*seg);
  if (!g) return false;  // not ours to judge: leave foreign or corrupt files alone
  if (IsAlivePacked(g->creator)) return false;
  TopicRegion r = TopicRegionOf(*seg, *g);
  if (ProbeHolder(*seg, kTopicPublisherHolderSlot) != HolderState::kDead) return false;
  // Acquire: a snapshot; every slot ever claimed lies below the mark.
  const uint32_t hw =
      std::min(r.control->slots_high_water.load(std::memory_order_acquire), g->max_subscribers);
  for (uint32_t i = 0; i < hw; ++i) {
    if (ProbeHolder(*seg, TopicSubscriberHolderSlot(i)) != HolderState::kDead) return false;
  }
  return true;
}

}  // namespace

Expected<Topic> Topic::Create(std::string_view name, const TopicOptions& o) {
  TopicGeometry g;
  g.capacity = o.capacity;
  g.max_message_size =
      o.max_message_size != 0 ? o.max_message_size : TopicMaxMessageSizeLimit(o.capacity);
  if (o.capacity < kTopicRecordHeaderSize * 4) return RingErrc::kInvalidArgument;
  g.max_subscribers = o.max_subscribers;
  g.policy = o.policy;
  g.history = o.history;
  g.type_size = o.type.size;
  g.type_align = o.type.align;
  g.type_hash = o.type.hash;
  auto size = TopicSegmentSize(g);
  if (!size) return MakeUnexpected(size.error());
  auto seg = Segment::Create(name, *size, o.unlink, o.mode);
  if (!seg && o.reclaim_stale && seg.error() == std::errc::file_exists && IsStaleTopic(name)) {
    std::string n(name);
    ::shm_unlink(n.c_str());
    seg = Segment::Create(name, *size, o.unlink, o.mode);
  }
  if (!seg) return MakeUnexpected(seg.error());
  InitTopicSegment(*seg, g);
  auto shared = std::make_shared<Segment>(std::move(*seg));
  auto valid = ValidateTopicSegment(*shared);
  if (!valid) return MakeUnexpected(valid.error());
  return Topic(std::move(shared), *valid);
}

Expected<Topic> Topic::Attach(std::string_view name) {
  auto seg = Segment::Open(name);
  if (!seg) return MakeUnexpected(seg.error());
  auto g = ValidateTopicSegment(*seg);
  if (!g) return MakeUnexpected(g.error());
  return Topic(std::make_shared<Segment>(std::move(*seg)), *g);
}

Expected<TopicPublisher> Topic::Publisher() const {
  return TopicPublisher::Claim(segment_, region_);
}

Expected<TopicSubscriber> Topic::Subscriber() const {
  return TopicSubscriber::Join(segment_, region_);
}

uint32_t Topic::subscriber_count() const noexcept {
  return region_.control->subscriber_count.load(std::memory_order_relaxed);  // snapshot
}

uint64_t Topic::published() const noexcept {
  return region_.control->tail_seq.load(std::memory_order_relaxed);  // snapshot
}

}  // namespace shmlink
