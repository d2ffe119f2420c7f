// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <algorithm>
#include <string>

#include <shmlink/holder_lock.h>
#include <shmlink/log.h>
#include <shmlink/topic.h>
#include <shmlink/topic_liveness.h>

namespace shmlink {

namespace {

// A topic whose creator is gone and whose roles nobody holds (the kernel says so: no lock
// on the creator slot, the publisher slot or any subscriber slot ever used) can be
// replaced. Unknown is not dead: a probe that cannot decide keeps the segment.
bool IsStaleTopic(const Segment& seg) {
  auto g = ValidateTopicSegment(seg);
  if (!g) return false;  // not ours to judge: leave foreign or corrupt files alone
  if (ProbeHolder(seg, kCreatorHolderSlot) != HolderState::kDead) return false;
  TopicRegion r = TopicRegionOf(seg, *g);
  // Acquire: a snapshot; every slot ever claimed lies below the mark.
  const uint32_t hw =
      std::min(r.control->slots_high_water.load(std::memory_order_acquire), g->max_subscribers);
  return ProbeAnyHolder(seg, kTopicPublisherHolderSlot, TopicSubscriberHolderSlot(hw)) ==
         HolderState::kDead;
}

// Removes `name` if it is a stale topic: decided on one open file, and unlinked only if the
// name still refers to that file (UnlinkShmIfSame: a topic re-created under the name
// meanwhile by another process is never removed). True if creating again is worth a try.
bool RemoveIfStale(std::string_view name) {
  auto seg = Segment::Open(name);
  if (!seg) return seg.error() == std::errc::no_such_file_or_directory;
  if (!IsStaleTopic(*seg)) return false;
  auto removed = UnlinkShmIfSame(name, seg->fd());
  if (removed && *removed) {
    LogEvent(LogLevel::kInfo, "stale-removed", name, "creator, publisher and subscribers gone");
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
  if (!seg && o.reclaim_stale && seg.error() == std::errc::file_exists && RemoveIfStale(name)) {
    seg = Segment::Create(name, *size, o.unlink, o.mode);
  }
  if (!seg) return MakeUnexpected(seg.error());
  // The creator lock before the header is published: until then nobody judges the segment
  // (validation fails), so no cleaner can find it unheld while this Topic lives.
  auto creator = HolderLock::Acquire(*seg, kCreatorHolderSlot);
  if (!creator) {
    if (o.unlink == UnlinkPolicy::kKeep) (void)seg->Unlink();  // never published
    return MakeUnexpected(creator.error());
  }
  InitTopicSegment(*seg, g);
  auto shared = std::make_shared<Segment>(std::move(*seg));
  auto valid = ValidateTopicSegment(*shared);
  if (!valid) return MakeUnexpected(valid.error());
  return Topic(std::move(shared), *valid, std::make_shared<HolderLock>(std::move(*creator)));
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
