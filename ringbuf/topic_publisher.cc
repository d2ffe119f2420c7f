// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Memory-ordering argument for topics (labels are referenced at each atomic, here and in
// topic_subscriber.cc):
//
// SYNC(record): publish() writes the terminator after the new record (relaxed), the length
//   word, and the caller has written the payload; then it stores the record's seq word with
//   release (with a wrap, the data word is stored relaxed first and the padding word in
//   front of it is the release store). A subscriber loads the seq word at its position with
//   acquire (seq_cst) and reads the record only when the word says "data, my sequence": all
//   of the above is then visible. The slot at the published end always holds the terminator
//   (kind end, next sequence), stored before the previous release, so a subscriber that is
//   not lapped can only see, at its position, the terminator or a record published after it.
// SYNC(head): overwrite policy, the seqlock. Before the publisher writes over any byte of a
//   record (terminator, length, payload, seq word), it stores head past that record
//   (relaxed) and issues a release fence. A subscriber reads the record, issues an acquire
//   fence, then loads head: if any of its reads saw a byte the publisher wrote after the
//   fence, the fences synchronise and the load sees the new head (> the record's position):
//   the record is reported as overrun, never returned as good. (The payload is read with
//   plain loads: formally a data race with the overwriting stores, as in every seqlock;
//   the fences are the ordering and the check discards what may be torn.)
// SYNC(join): block policy. A joining subscriber stores its position c (seq_cst), then loads
//   head (seq_cst) and retries with c = head until head <= c. The publisher, before it
//   relies on a new scan, stores head = A (seq_cst, the announcement), then loads the slot
//   high-water mark and the slots (seq_cst). In the single total order either the scan
//   sees the joiner's c, or the joiner's load of head follows the announcement and so
//   c >= A. Hence min(A, scanned minimum) is a floor no live subscriber, present or
//   future, will go below (positions only grow): the publisher caches it (safe_) and
//   rescans only when it needs to reclaim past it.
// SYNC(slot): block policy. A subscriber finishes reading a record, then stores its slot
//   position past it (seq_cst ⊇ release). The publisher loads slot positions (seq_cst ⊇
//   acquire) before it overwrites below them.
// SYNC(event-count): as in the SPSC ring (event_count.h): after a publication, a seq_cst
//   fence, then NotifyAll on data_event; subscribers' re-checks are seq_cst loads of the
//   seq word. The block-policy publisher sleeps on space_event; subscribers' releases store
//   their slot seq_cst and notify it; its re-check (the scan) loads slots seq_cst.
// SYNC(resume): tail_pos/tail_seq are stored (release) after each publication; a successor
//   publisher loads them after its owner CAS (acq_rel) and follows records published
//   beyond tail_pos (acquire) by a predecessor that died between the two stores.
#include <algorithm>
#include <atomic>
#include <utility>

#include <shmlink/blocking_wait.h>
#include <shmlink/process_identity.h>
#include <shmlink/topic_liveness.h>
#include <shmlink/topic_publisher.h>

namespace shmlink {

namespace {
constexpr uint64_t kHdr = kTopicRecordHeaderSize;
constexpr auto kLivenessPeriod = std::chrono::milliseconds(20);
}  // namespace

Expected<TopicPublisher> TopicPublisher::Claim(std::shared_ptr<const Segment> segment,
                                               const TopicRegion& region) {
  // The owner word names us for tools and to tell "died" from "left": never with a start
  // time we could not read (process_identity.h).
  auto self = SelfIdentity();
  if (!self) return MakeUnexpected(self.error());
  const uint64_t me = self->Pack();
  // The lock is the arbiter: one live holder; a dead one's lock is already gone.
  auto lock = HolderLock::Acquire(*segment, kTopicPublisherHolderSlot);
  if (!lock) return MakeUnexpected(lock.error());
  // SYNC(owner): seq_cst; names the holder (see topic_liveness.h). Stored after taking the
  // lock, so a subscriber never pairs our name with a free lock while we live.
  region.control->publisher_owner.store(me, std::memory_order_seq_cst);
  // Statistics only (how often the role changed hands): relaxed.
  region.control->publisher_epoch.fetch_add(1, std::memory_order_relaxed);
  return TopicPublisher(std::move(segment), region, std::move(*lock), me);
}

TopicPublisher::TopicPublisher(std::shared_ptr<const Segment> seg, const TopicRegion& region,
                               HolderLock lock, uint64_t owner)
    : segment_(std::move(seg)),
      region_(region),
      lock_(std::move(lock)),
      owner_word_(owner),
      mask_(region.geometry.capacity - 1) {
  if (region_.geometry.policy == TopicPolicy::kBlock && region_.geometry.history > 0) {
    history_pos_.assign(region_.geometry.history, 0);
  }
  Resume();
}

// Picks up where the previous publisher (if any) stopped.
void TopicPublisher::Resume() noexcept {
  TopicControl* ctl = region_.control;
  const uint64_t cap = region_.geometry.capacity;
  // SYNC(resume): ordered after the predecessor's stores by the owner CAS (acq_rel).
  tail_ = ctl->tail_pos.load(std::memory_order_seq_cst);
  head_ = ctl->head_pos.load(std::memory_order_seq_cst);
  announced_ = head_;
  safe_ = head_;
  if (tail_ % kTopicRecordAlign != 0 || head_ % kTopicRecordAlign != 0 || head_ > tail_ ||
      tail_ - head_ > cap) {
    corrupt_ = true;
    return;
  }
  // Follow records a predecessor published after its last tail_pos store, to the
  // terminator. SYNC(resume): acquire.
  uint64_t word = TopicSeqWord(region_.data, tail_ & mask_).load(std::memory_order_acquire);
  uint64_t expect = TopicWordSeq(word);
  for (uint64_t steps = 0;; ++steps) {
    const uint64_t kind = TopicWordKind(word);
    if (TopicWordSeq(word) != expect || kind == 0 || steps > cap / kTopicRecordAlign) {
      corrupt_ = true;
      return;
    }
    if (kind == kTopicKindEnd) break;
    const uint64_t span = RecordSpanAt(tail_);
    if (span == 0 || tail_ + span - head_ + kHdr > cap) {
      corrupt_ = true;
      return;
    }
    if (kind == kTopicKindData) ++expect;
    tail_ += span;
    word = TopicSeqWord(region_.data, tail_ & mask_).load(std::memory_order_acquire);
  }
  seq_ = expect;
  if (region_.geometry.policy == TopicPolicy::kBlock) {
    // head_pos is only the predecessor's announcement (where joiners start); subscribers
    // that joined earlier may still need records below it. Reclaim only from the lowest
    // position a live subscriber holds (positions outside the log are ignored: they cannot
    // be records we would overwrite).
    const uint64_t m = ScanSlots();
    if (m < head_ && m + cap >= tail_ && m % kTopicRecordAlign == 0) head_ = m;
    safe_ = head_;
  }
  // SYNC(resume): release; a takeover repairs what joiners and statistics read.
  ctl->tail_pos.store(tail_, std::memory_order_release);
  ctl->tail_seq.store(seq_, std::memory_order_release);
  // A new publisher reopens a closed stream. seq_cst: read by subscribers at the terminator.
  ctl->closed.store(0, std::memory_order_seq_cst);
}

TopicPublisher::TopicPublisher(TopicPublisher&& o) noexcept
    : segment_(std::move(o.segment_)),
      region_(std::exchange(o.region_, TopicRegion{})),
      lock_(std::move(o.lock_)),
      owner_word_(std::exchange(o.owner_word_, 0)),
      mask_(o.mask_),
      tail_(o.tail_),
      seq_(o.seq_),
      head_(o.head_),
      announced_(o.announced_),
      safe_(o.safe_),
      history_pos_(std::move(o.history_pos_)),
      history_known_(o.history_known_),
      next_liveness_(o.next_liveness_),
      loan_size_(o.loan_size_),
      loan_pad_(o.loan_pad_),
      loaned_(std::exchange(o.loaned_, false)),
      closed_(o.closed_),
      corrupt_(o.corrupt_) {}

TopicPublisher& TopicPublisher::operator=(TopicPublisher&& o) noexcept {
  if (this != &o) {
    this->~TopicPublisher();
    new (this) TopicPublisher(std::move(o));
  }
  return *this;
}

TopicPublisher::~TopicPublisher() {
  if (region_.control == nullptr) return;
  // A copy inherited across fork: the parent is still the publisher; its name stays.
  if (!lock_.held_here()) return;
  // Leaving, not dying: clear our name first (SYNC(owner): release CAS; seq_cst would do
  // no better for the probe, which orders through the lock syscall), then drop the lock.
  uint64_t expected = owner_word_;
  region_.control->publisher_owner.compare_exchange_strong(expected, 0, std::memory_order_seq_cst);
  lock_.Release();
}

uint64_t TopicPublisher::RecordSpanAt(uint64_t pos) const noexcept {
  const uint64_t cap = region_.geometry.capacity;
  const uint64_t idx = pos & mask_;
  const uint64_t to_end = cap - idx;
  // Our own records (or a predecessor's, ordered by the owner CAS): relaxed.
  const uint64_t word = TopicSeqWord(region_.data, idx).load(std::memory_order_relaxed);
  const uint64_t len = TopicLengthWord(region_.data, idx).load(std::memory_order_relaxed);
  switch (TopicWordKind(word)) {
    case kTopicKindData: {
      const uint64_t rec = TopicRecordSize(len);
      return len <= max_message_size() && rec <= to_end ? rec : 0;
    }
    case kTopicKindPadding:
      return len + kHdr == to_end && to_end < cap ? to_end : 0;
    default:
      return 0;
  }
}

uint32_t TopicPublisher::subscriber_count() const noexcept {
  // Snapshot: relaxed.
  return region_.control->subscriber_count.load(std::memory_order_relaxed);
}

// Makes every byte below `target` ours to overwrite (head_ >= target).
Expected<void> TopicPublisher::Reclaim(uint64_t target) noexcept {
  uint64_t x = head_;
  while (x < target) {
    const uint64_t span = RecordSpanAt(x);
    if (span == 0 || x + span > tail_) {
      corrupt_ = true;
      return RingErrc::kCorrupt;
    }
    x += span;
  }
  if (region_.geometry.policy == TopicPolicy::kBlock) return ReclaimBlocking(x);
  head_ = x;
  // SYNC(head): the seqlock store, then a release fence before any overwriting store.
  region_.control->head_pos.store(x, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  return {};
}

uint64_t TopicPublisher::ScanSlots() noexcept {
  TopicControl* ctl = region_.control;
  // SYNC(join): seq_cst loads after the announcement.
  const uint32_t hw = std::min(ctl->slots_high_water.load(std::memory_order_seq_cst),
                               region_.geometry.max_subscribers);
  uint64_t m = kTopicFreeSlot;
  for (uint32_t i = 0; i < hw; ++i) {
    // SYNC(slot)/SYNC(join): seq_cst (acquire: the subscriber's reads below it are done).
    m = std::min(m, region_.slots[i].pos.load(std::memory_order_seq_cst));
  }
  return m;
}

// Frees the slots below `x` whose holders died. Returns true if it freed any.
bool TopicPublisher::DropDeadSubscribersBelow(uint64_t x) noexcept {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_liveness_) return false;
  next_liveness_ = now + kLivenessPeriod;
  TopicControl* ctl = region_.control;
  const uint32_t hw = std::min(ctl->slots_high_water.load(std::memory_order_seq_cst),
                               region_.geometry.max_subscribers);
  bool freed = false;
  for (uint32_t i = 0; i < hw; ++i) {
    TopicSlot& slot = region_.slots[i];
    // seq_cst: owner before pos (a joiner stores them in the opposite order).
    const uint64_t owner = slot.owner.load(std::memory_order_seq_cst);
    uint64_t pos = slot.pos.load(std::memory_order_seq_cst);
    if (pos >= x) continue;
    // owner 0 with a position: a joiner between taking the lock and naming itself: wait.
    // Anything the kernel does not report dead (alive or unknown) keeps blocking.
    if (!TopicSubscriberDied(*segment_, slot, i, owner)) continue;
    if (!slot.pos.compare_exchange_strong(pos, kTopicFreeSlot, std::memory_order_seq_cst)) continue;
    // A joiner may have taken the slot over between our probe and the CAS (it names itself
    // before it stores a position): if the name changed, the position we cleared may be
    // its own, so put it back (unless it already stored a newer one).
    if (slot.owner.load(std::memory_order_seq_cst) != owner) {
      uint64_t cleared = kTopicFreeSlot;
      slot.pos.compare_exchange_strong(cleared, pos, std::memory_order_seq_cst);
      continue;
    }
    freed = true;
    // Statistics: relaxed.
    ctl->subscriber_count.fetch_sub(1, std::memory_order_relaxed);
  }
  return freed;
}

Expected<void> TopicPublisher::ReclaimBlocking(uint64_t x) noexcept {
  if (x <= safe_) {
    head_ = x;  // safe_ <= announced_: nothing to store
    return {};
  }
  // Announce how far joiners may start: at least x, and no further than keeps the last K
  // messages (while unknown after a takeover: keep everything from x).
  uint64_t a = std::max(x, announced_);
  const uint64_t k = region_.geometry.history;
  if (k == 0) {
    a = std::max(a, tail_);
  } else if (history_known_ >= k) {
    a = std::max(a, history_pos_[seq_ % k]);  // position of message seq_ - k
  }
  if (a != announced_) {
    announced_ = a;
    // SYNC(join): the announcement, seq_cst, before the scan.
    region_.control->head_pos.store(a, std::memory_order_seq_cst);
  }
  for (int pass = 0; pass < 2; ++pass) {
    safe_ = std::min(announced_, ScanSlots());
    if (x <= safe_) {
      head_ = x;
      return {};
    }
    if (!DropDeadSubscribersBelow(x)) break;
  }
  return RingErrc::kWouldBlock;
}

Expected<std::span<std::byte>> TopicPublisher::try_loan(size_t n) noexcept {
  if (closed_) return RingErrc::kClosed;
  if (corrupt_) return RingErrc::kCorrupt;
  if (loaned_) return RingErrc::kBadState;
  if (n > max_message_size()) return RingErrc::kTooLarge;
  if (region_.geometry.type_size != 0 && n != region_.geometry.type_size) {
    return RingErrc::kTypeMismatch;
  }
  const uint64_t cap = region_.geometry.capacity;
  const uint64_t rec = TopicRecordSize(n);
  const uint64_t idx = tail_ & mask_;
  const uint64_t to_end = cap - idx;
  const bool pad = rec > to_end;
  const uint64_t need = (pad ? to_end : 0) + rec + kHdr;  // + the next terminator
  if (tail_ + need > head_ + cap) {
    auto r = Reclaim(tail_ + need - cap);
    if (!r) return MakeUnexpected(r.error());
  }
  loan_size_ = n;
  loan_pad_ = pad;
  loaned_ = true;
  return std::span<std::byte>(region_.data + (pad ? 0 : idx) + kHdr, n);
}

Expected<std::span<std::byte>> TopicPublisher::loan(size_t n, const WaitOptions& opts) {
  auto r = try_loan(n);
  if (r || !internal::WouldBlock(r.error())) return r;
  return internal::BlockingWait([&] { return try_loan(n); }, region_.control->space_event, opts);
}

Expected<uint64_t> TopicPublisher::publish() noexcept {
  if (!loaned_) return RingErrc::kBadState;
  loaned_ = false;
  TopicControl* ctl = region_.control;
  std::byte* data = region_.data;
  const uint64_t cap = region_.geometry.capacity;
  const uint64_t seq = seq_;
  const uint64_t idx = tail_ & mask_;
  const uint64_t rec_pos = loan_pad_ ? tail_ + (cap - idx) : tail_;
  const uint64_t rec_idx = rec_pos & mask_;
  const uint64_t end = rec_pos + TopicRecordSize(loan_size_);
  // SYNC(record): terminator and length first (relaxed: published by the release below).
  TopicSeqWord(data, end & mask_)
      .store(TopicWord(kTopicKindEnd, seq + 1), std::memory_order_relaxed);
  TopicLengthWord(data, rec_idx)
      .store(static_cast<uint32_t>(loan_size_), std::memory_order_relaxed);
  std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(data + rec_idx + 12))
      .store(0, std::memory_order_relaxed);
  if (loan_pad_) {
    // The data word at 0 is reachable only through the padding word: relaxed, then the
    // padding word is the release store.
    TopicSeqWord(data, rec_idx).store(TopicWord(kTopicKindData, seq), std::memory_order_relaxed);
    TopicLengthWord(data, idx).store(static_cast<uint32_t>(cap - idx - kHdr),
                                     std::memory_order_relaxed);
    TopicSeqWord(data, idx).store(TopicWord(kTopicKindPadding, seq), std::memory_order_release);
  } else {
    TopicSeqWord(data, rec_idx).store(TopicWord(kTopicKindData, seq), std::memory_order_release);
  }
  if (!history_pos_.empty()) {
    history_pos_[seq % history_pos_.size()] = rec_pos;
    ++history_known_;
  }
  tail_ = end;
  seq_ = seq + 1;
  // SYNC(resume): release; read by successors, joiners and statistics only.
  ctl->tail_pos.store(tail_, std::memory_order_release);
  ctl->tail_seq.store(seq_, std::memory_order_release);
  // SYNC(event-count): order the publication before NotifyAll's load of waiters.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  ctl->data_event.NotifyAll();
  return seq;
}

Expected<uint64_t> TopicPublisher::send(std::span<const std::byte> msg, const WaitOptions& opts) {
  auto buf = loan(msg.size(), opts);
  if (!buf) return MakeUnexpected(buf.error());
  if (!msg.empty()) std::memcpy(buf->data(), msg.data(), msg.size());
  return publish();
}

void TopicPublisher::close() noexcept {
  if (closed_) return;
  loaned_ = false;
  closed_ = true;
  // seq_cst: subscribers at the terminator load it (SYNC(event-count) as for a publication).
  region_.control->closed.store(1, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  region_.control->data_event.NotifyAll();
}

}  // namespace shmlink
