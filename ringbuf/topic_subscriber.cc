// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The memory-ordering argument (SYNC labels) is in topic_publisher.cc.
#include <algorithm>
#include <atomic>
#include <utility>

#include <shmlink/blocking_wait.h>
#include <shmlink/process_identity.h>
#include <shmlink/readiness_notifier.h>
#include <shmlink/topic_liveness.h>
#include <shmlink/topic_subscriber.h>

namespace shmlink {

namespace {
constexpr uint64_t kHdr = kTopicRecordHeaderSize;
// Attempts to find a consistent start under a publisher that keeps lapping the walk.
constexpr int kJoinAttempts = 1000;
}  // namespace

Expected<TopicSubscriber> TopicSubscriber::Join(std::shared_ptr<const Segment> segment,
                                                const TopicRegion& region) {
  TopicControl* ctl = region.control;
  const uint32_t n = region.geometry.max_subscribers;
  // Named with a start time we could read, or not at all (as TopicPublisher::Claim).
  auto self = SelfIdentity();
  if (!self) return MakeUnexpected(self.error());
  const uint64_t me = self->Pack();
  int64_t slot = -1;
  HolderLock lock;
  // A free slot first, then one whose holder died (the kernel says so). The slot's lock is
  // the arbiter between joiners; the owner word is the quick "free" hint and the name.
  for (int pass = 0; pass < 2 && slot < 0; ++pass) {
    for (uint32_t i = 0; i < n && slot < 0; ++i) {
      const uint64_t owner = region.slots[i].owner.load(std::memory_order_seq_cst);
      if (pass == 0 ? owner != 0
                    : (owner == 0 || !TopicSubscriberDied(*segment, region.slots[i], i, owner))) {
        continue;
      }
      auto l = HolderLock::Acquire(*segment, TopicSubscriberHolderSlot(i));
      if (!l) {
        if (l.error() == RingErrc::kRoleTaken) continue;
        return MakeUnexpected(l.error());  // e.g. EMFILE
      }
      lock = std::move(*l);
      // SYNC(owner): seq_cst; named before any position is stored (the publisher's
      // DropDeadSubscribersBelow relies on that order).
      region.slots[i].owner.store(me, std::memory_order_seq_cst);
      slot = i;
    }
  }
  const uint64_t owner = me;
  if (slot < 0) return RingErrc::kRoleTaken;
  // Raise the high-water mark before storing a position: SYNC(join), seq_cst (the
  // publisher loads it before scanning).
  uint32_t hw = ctl->slots_high_water.load(std::memory_order_seq_cst);
  while (hw < slot + 1 && !ctl->slots_high_water.compare_exchange_weak(
                              hw, static_cast<uint32_t>(slot + 1), std::memory_order_seq_cst)) {
  }
  TopicSubscriber sub(std::move(segment), region, static_cast<uint32_t>(slot), std::move(lock),
                      owner);
  auto placed = sub.Position();
  if (!placed) return MakeUnexpected(placed.error());
  // Statistics: relaxed.
  ctl->subscriber_count.fetch_add(1, std::memory_order_relaxed);
  return sub;
}

TopicSubscriber::TopicSubscriber(std::shared_ptr<const Segment> seg, const TopicRegion& region,
                                 uint32_t slot, HolderLock lock, uint64_t owner)
    : segment_(std::move(seg)),
      region_(region),
      slot_index_(slot),
      lock_(std::move(lock)),
      owner_word_(owner),
      mask_(region.geometry.capacity - 1) {}

// kBlock: pins the slot at a position the publisher will not reclaim. SYNC(join).
Expected<void> TopicSubscriber::PinBlock(uint64_t* start) noexcept {
  TopicControl* ctl = region_.control;
  TopicSlot& slot = region_.slots[slot_index_];
  uint64_t c = ctl->head_pos.load(std::memory_order_seq_cst);
  for (;;) {
    slot.pos.store(c, std::memory_order_seq_cst);
    const uint64_t h = ctl->head_pos.load(std::memory_order_seq_cst);
    if (h <= c) break;
    c = h;
  }
  *start = c;
  return {};
}

// Finds the first message to deliver: the history start (the message tail_seq - K, or the
// oldest intact one), walking forward from head; under kOverwrite each step is validated
// against head (a lapped walk restarts).
Expected<void> TopicSubscriber::Position() noexcept {
  TopicControl* ctl = region_.control;
  std::byte* data = region_.data;
  const uint64_t cap = region_.geometry.capacity;
  const bool overwrite = region_.geometry.policy == TopicPolicy::kOverwrite;
  for (int attempt = 0;; ++attempt) {
    uint64_t pos = 0;
    if (overwrite) {
      // SYNC(head): acquire.
      pos = ctl->head_pos.load(std::memory_order_acquire);
    } else {
      (void)PinBlock(&pos);
    }
    if (pos % kTopicRecordAlign != 0) {
      corrupt_ = true;
      return RingErrc::kCorrupt;
    }
    // SYNC(record): acquire.
    uint64_t word = TopicSeqWord(data, pos & mask_).load(std::memory_order_acquire);
    const uint64_t first = TopicWordSeq(word);
    const uint64_t tail_seq = ctl->tail_seq.load(std::memory_order_acquire);
    const uint64_t k = region_.geometry.history;
    const uint64_t want = tail_seq > k && tail_seq - k > first ? tail_seq - k : first;
    uint64_t s = first;
    bool lapped = false;
    for (uint64_t steps = 0; s < want || TopicWordKind(word) == kTopicKindPadding; ++steps) {
      const uint64_t kind = TopicWordKind(word);
      if (kind == kTopicKindEnd) break;  // fewer messages than tail_seq said (stale read)
      const uint64_t idx = pos & mask_;
      const uint64_t to_end = cap - idx;
      const uint64_t len = TopicLengthWord(data, idx).load(std::memory_order_relaxed);
      uint64_t next = 0;
      if (kind == kTopicKindData && len <= region_.geometry.max_message_size &&
          TopicRecordSize(len) <= to_end) {
        next = pos + TopicRecordSize(len);
      } else if (kind == kTopicKindPadding && to_end < cap) {
        next = pos + to_end;
      }
      const uint64_t next_word =
          next == 0 ? 0 : TopicSeqWord(data, next & mask_).load(std::memory_order_acquire);
      const uint64_t next_seq = kind == kTopicKindData ? s + 1 : s;
      if (overwrite) {
        // SYNC(head): our reads of this record are valid only if head did not pass it.
        std::atomic_thread_fence(std::memory_order_acquire);
        if (ctl->head_pos.load(std::memory_order_relaxed) > pos) {
          lapped = true;
          break;
        }
      }
      if (next == 0 || TopicWordSeq(next_word) != next_seq || TopicWordKind(next_word) == 0 ||
          steps > cap / kTopicRecordAlign) {
        if (overwrite) {
          lapped = true;
          break;
        }
        corrupt_ = true;
        return RingErrc::kCorrupt;
      }
      pos = next;
      word = next_word;
      s = next_seq;
    }
    if (lapped && attempt < kJoinAttempts) continue;
    if (overwrite && attempt < kJoinAttempts) {
      std::atomic_thread_fence(std::memory_order_acquire);
      if (ctl->head_pos.load(std::memory_order_relaxed) > pos) continue;  // lapped: retry
    }
    pos_ = pos;
    seq_ = s;
    Store();
    return {};
  }
}

TopicSubscriber::TopicSubscriber(TopicSubscriber&& o) noexcept
    : segment_(std::move(o.segment_)),
      region_(std::exchange(o.region_, TopicRegion{})),
      slot_index_(o.slot_index_),
      lock_(std::move(o.lock_)),
      owner_word_(std::exchange(o.owner_word_, 0)),
      mask_(o.mask_),
      pos_(o.pos_),
      seq_(o.seq_),
      held_end_(o.held_end_),
      last_loss_(o.last_loss_),
      total_lost_(o.total_lost_),
      held_(o.held_),
      holding_(std::exchange(o.holding_, false)),
      corrupt_(o.corrupt_),
      notifier_(std::move(o.notifier_)) {}

TopicSubscriber& TopicSubscriber::operator=(TopicSubscriber&& o) noexcept {
  if (this != &o) {
    this->~TopicSubscriber();
    new (this) TopicSubscriber(std::move(o));
  }
  return *this;
}

TopicSubscriber::~TopicSubscriber() {
  if (region_.control != nullptr && !lock_.held_here()) {
    // A copy inherited across fork: the slot, its position and the notifier thread are
    // the parent's (the thread does not exist here, so it is not joined: leaked).
    (void)notifier_.release();
    return;
  }
  notifier_.reset();  // stops its thread before the mapping can go
  if (region_.control != nullptr) Leave();
}

void TopicSubscriber::Leave() noexcept {
  TopicSlot& slot = region_.slots[slot_index_];
  // SYNC(slot): seq_cst; the publisher stops waiting for us.
  slot.pos.store(kTopicFreeSlot, std::memory_order_seq_cst);
  region_.control->subscriber_count.fetch_sub(1, std::memory_order_relaxed);  // statistics
  uint64_t expected = owner_word_;
  // SYNC(owner): seq_cst; leaving, not dying: the name goes before the lock does.
  slot.owner.compare_exchange_strong(expected, 0, std::memory_order_seq_cst);
  lock_.Release();
  if (region_.geometry.policy == TopicPolicy::kBlock) region_.control->space_event.NotifyAll();
}

// Publishes our position to the publisher (kBlock: it waits on it) and for statistics.
void TopicSubscriber::Store() noexcept {
  TopicSlot& slot = region_.slots[slot_index_];
  slot.seq.store(seq_, std::memory_order_relaxed);  // statistics
  if (region_.geometry.policy == TopicPolicy::kBlock) {
    // SYNC(slot): seq_cst store after our reads; SYNC(event-count) before NotifyAll.
    slot.pos.store(pos_, std::memory_order_seq_cst);
    region_.control->space_event.NotifyAll();
  } else {
    slot.pos.store(pos_, std::memory_order_relaxed);  // not read by the overwrite publisher
  }
}

bool TopicSubscriber::Lapped() const noexcept {
  // SYNC(head): the acquire fence after our reads, then head.
  std::atomic_thread_fence(std::memory_order_acquire);
  return region_.control->head_pos.load(std::memory_order_relaxed) > pos_;
}

// Lapped (kOverwrite): jump to the oldest intact record and count what was lost.
RingErrc TopicSubscriber::Overrun() noexcept {
  TopicControl* ctl = region_.control;
  for (int attempt = 0; attempt < kJoinAttempts; ++attempt) {
    // SYNC(head): acquire; then the record's word; then head again (unchanged: the word
    // was read while the record at h was intact).
    const uint64_t h = ctl->head_pos.load(std::memory_order_acquire);
    if (h % kTopicRecordAlign != 0) break;
    const uint64_t word = TopicSeqWord(region_.data, h & mask_).load(std::memory_order_acquire);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (ctl->head_pos.load(std::memory_order_relaxed) != h) continue;
    const uint64_t s = TopicWordSeq(word);
    if (TopicWordKind(word) == 0 || s < seq_ || h < pos_) break;
    last_loss_ = s - seq_;
    total_lost_ += last_loss_;
    pos_ = h;
    seq_ = s;
    Store();
    return RingErrc::kOverrun;
  }
  corrupt_ = true;
  return RingErrc::kCorrupt;
}

Expected<TopicSample> TopicSubscriber::try_receive() noexcept {
  if (holding_) return held_;
  if (corrupt_) return RingErrc::kCorrupt;
  std::byte* data = region_.data;
  const uint64_t cap = region_.geometry.capacity;
  const bool overwrite = region_.geometry.policy == TopicPolicy::kOverwrite;
  for (int hops = 0; hops < 2; ++hops) {
    const uint64_t idx = pos_ & mask_;
    const uint64_t to_end = cap - idx;
    // SYNC(record): acquire; seq_cst for SYNC(event-count) (a plain load on x86-64).
    const uint64_t word = TopicSeqWord(data, idx).load(std::memory_order_seq_cst);
    const uint64_t kind = TopicWordKind(word);
    if (TopicWordSeq(word) == (seq_ & kTopicSeqMask) && kind == kTopicKindData) {
      const uint64_t len = TopicLengthWord(data, idx).load(std::memory_order_relaxed);
      const uint64_t rec = TopicRecordSize(len);
      const bool bad_type = region_.geometry.type_size != 0 && len != region_.geometry.type_size;
      if (len > region_.geometry.max_message_size || rec > to_end || bad_type) {
        if (overwrite && Lapped()) return Overrun();
        corrupt_ = true;
        return RingErrc::kCorrupt;
      }
      holding_ = true;
      held_end_ = pos_ + rec;
      held_ = TopicSample{std::span<const std::byte>(data + idx + kHdr, len), seq_};
      return held_;
    }
    if (TopicWordSeq(word) == (seq_ & kTopicSeqMask) && kind == kTopicKindPadding && to_end < cap) {
      pos_ += to_end;  // the message itself is at index 0
      continue;
    }
    if (TopicWordSeq(word) == (seq_ & kTopicSeqMask) && kind == kTopicKindEnd) {
      if (region_.control->closed.load(std::memory_order_seq_cst) != 0 &&
          TopicSeqWord(data, idx).load(std::memory_order_seq_cst) == word) {
        return RingErrc::kClosed;
      }
      return RingErrc::kWouldBlock;
    }
    // Another sequence at our position: lapped, or a broken segment.
    if (overwrite && Lapped()) return Overrun();
    corrupt_ = true;
    return RingErrc::kCorrupt;
  }
  // Padding followed by padding: never written by a publisher.
  if (overwrite && Lapped()) return Overrun();
  corrupt_ = true;
  return RingErrc::kCorrupt;
}

Expected<TopicSample> TopicSubscriber::receive(const WaitOptions& opts) {
  return internal::BlockingWaitWith([&] { return try_receive(); }, region_.control->data_event,
                                    [&] { return TopicPublisherDied(*segment_, *region_.control); },
                                    opts);
}

Expected<void> TopicSubscriber::release() noexcept {
  if (!holding_) return {};
  holding_ = false;
  if (region_.geometry.policy == TopicPolicy::kOverwrite && Lapped()) return Overrun();
  pos_ = held_end_;
  ++seq_;
  Store();
  return {};
}

Expected<int> TopicSubscriber::fd() {
  if (!notifier_) {
    ReadinessSource src;
    TopicControl* ctl = region_.control;
    src.event = &ctl->data_event;
    src.snapshot = [ctl] {
      ReadinessSnapshot s;
      // SYNC(event-count): seq_cst, the notifier's re-check (the publisher stores tail_seq
      // and closed, then a seq_cst fence, then notifies).
      s.progress = ctl->tail_seq.load(std::memory_order_seq_cst);
      s.closed = ctl->closed.load(std::memory_order_seq_cst);
      // Relaxed: only compared with the owner found dead (a hint; liveness is the lock's).
      s.owner = ctl->publisher_owner.load(std::memory_order_relaxed);
      return s;
    };
    src.writer_died = [seg = segment_, ctl] { return TopicPublisherDied(*seg, *ctl); };
    auto n = ReadinessNotifier::Start(std::move(src));
    if (!n) return MakeUnexpected(n.error());
    notifier_ = std::move(*n);
  }
  return notifier_->fd();
}

}  // namespace shmlink
