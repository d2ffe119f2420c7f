// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Memory-ordering argument for the SPSC ring (labels are referenced at each atomic):
//
// SYNC(data): the producer writes record headers and payloads with plain stores, then
//   stores write_pos (seq_cst, which includes release). The consumer loads write_pos
//   (seq_cst, includes acquire) and only then reads records below it: every byte of a
//   record is visible before the consumer can see the position that covers it.
// SYNC(space): the consumer finishes reading a record, then stores read_pos (seq_cst,
//   includes release). The producer loads read_pos (includes acquire) before reusing those
//   bytes, so its new writes cannot overtake the consumer's reads.
// The positions are seq_cst rather than merely release/acquire because the sleeping
//   protocol (event_count.h) needs a single total order between "publish position" and
//   "load waiters" on one side and "announce waiter" and "re-load position" on the other.
//   On x86-64 that costs one locked store per commit()/release() (not per message when
//   batching) and nothing on loads.
// writer_closed / reader_closed: seq_cst store after the final commit, seq_cst loads; the
//   consumer re-reads write_pos after seeing writer_closed, so a commit that preceded the
//   close is never missed.
#include "ringbuf/spsc_ring.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "ringbuf/blocking_wait.h"
#include "ringbuf/process_identity.h"

namespace shmlink {

// ---------------------------------------------------------------- SpscProducer

Expected<SpscProducer> SpscProducer::Claim(std::shared_ptr<const Segment> segment,
                                           SpscRegion region) {
  auto owner = ClaimOwnerWord(region.control->producer_owner);
  if (!owner) return MakeUnexpected(owner.error());
  return SpscProducer(std::move(segment), region, *owner);
}

SpscProducer::SpscProducer(std::shared_ptr<const Segment> seg, SpscRegion region, uint64_t owner)
    : segment_(std::move(seg)), region_(region), owner_word_(owner), mask_(region.capacity - 1) {
  // A previous producer may have died after committing: resume after its last commit.
  // The owner CAS (acq_rel) ordered us after it. Validation happens on first use.
  committed_pos_ = region_.control->write_pos.load(std::memory_order_seq_cst);
  write_pos_ = committed_pos_;
  cached_read_pos_ = region_.control->read_pos.load(std::memory_order_seq_cst);
  // Positions we index with must be record-aligned and consistent, or a hostile/broken
  // segment could make us write a record header past the end of the data region.
  corrupt_ = (committed_pos_ % kRecordAlign) != 0 || cached_read_pos_ > committed_pos_ ||
             committed_pos_ - cached_read_pos_ > region_.capacity;
  if (corrupt_) cached_read_pos_ = committed_pos_;
  closed_ = region_.control->writer_closed.load(std::memory_order_seq_cst) != 0;
}

SpscProducer::SpscProducer(SpscProducer&& o) noexcept
    : segment_(std::move(o.segment_)),
      region_(std::exchange(o.region_, SpscRegion{})),
      owner_word_(std::exchange(o.owner_word_, 0)),
      mask_(o.mask_),
      write_pos_(o.write_pos_),
      committed_pos_(o.committed_pos_),
      cached_read_pos_(o.cached_read_pos_),
      pending_count_(std::exchange(o.pending_count_, 0)),
      closed_(o.closed_),
      corrupt_(o.corrupt_) {}

SpscProducer& SpscProducer::operator=(SpscProducer&& o) noexcept {
  if (this != &o) {
    this->~SpscProducer();
    new (this) SpscProducer(std::move(o));
  }
  return *this;
}

SpscProducer::~SpscProducer() {
  if (region_.control == nullptr) return;
  cancel();
  ReleaseOwnerWord(region_.control->producer_owner, owner_word_);
}

Expected<std::span<std::byte>> SpscProducer::TryReserveImpl(size_t n) noexcept {
  if (closed_) return RingErrc::kClosed;
  if (corrupt_) return RingErrc::kCorrupt;
  if (n > max_message_size()) return RingErrc::kTooLarge;
  SpscControl* ctl = region_.control;
  const uint64_t cap = region_.capacity;
  const uint64_t rec = RecordSize(n);
  uint64_t idx = write_pos_ & mask_;
  const uint64_t to_end = cap - idx;
  const uint64_t need = rec <= to_end ? rec : to_end + rec;
  if (write_pos_ + need - cached_read_pos_ > cap) {
    // SYNC(space): acquire side (seq_cst load).
    const uint64_t r = ctl->read_pos.load(std::memory_order_seq_cst);
    if (r < cached_read_pos_ || r > committed_pos_) return RingErrc::kCorrupt;
    cached_read_pos_ = r;
    if (ctl->reader_closed.load(std::memory_order_seq_cst) != 0) return RingErrc::kClosed;
    if (write_pos_ + need - r > cap) return RingErrc::kWouldBlock;
  }
  std::byte* data = region_.data;
  if (rec > to_end) {
    const RecordHeader pad{static_cast<uint32_t>(to_end - kRecordHeaderSize), kRecordPadding};
    std::memcpy(data + idx, &pad, sizeof(pad));
    write_pos_ += to_end;
    idx = 0;
  }
  const RecordHeader h{static_cast<uint32_t>(n), kRecordData};
  std::memcpy(data + idx, &h, sizeof(h));
  write_pos_ += rec;
  ++pending_count_;
  return std::span<std::byte>(data + idx + kRecordHeaderSize, n);
}

Expected<std::span<std::byte>> SpscProducer::try_reserve(size_t n) noexcept {
  return TryReserveImpl(n);
}

Expected<std::span<std::byte>> SpscProducer::reserve(size_t n, const WaitOptions& opts) {
  auto r = TryReserveImpl(n);
  if (r || !internal::WouldBlock(r.error())) return r;
  // The reader can only free what was published: publish our batch before waiting.
  if (pending_count_ > 0) commit();
  return internal::BlockingWait([&] { return TryReserveImpl(n); }, region_.control->space_event,
                                &region_.control->consumer_owner, opts);
}

void SpscProducer::commit() noexcept {
  if (write_pos_ == committed_pos_) return;
  // SYNC(data): release side (seq_cst store), publishes all records below write_pos_.
  region_.control->write_pos.store(write_pos_, std::memory_order_seq_cst);
  committed_pos_ = write_pos_;
  pending_count_ = 0;
  region_.control->data_event.NotifyAll();
}

void SpscProducer::cancel() noexcept {
  write_pos_ = committed_pos_;
  pending_count_ = 0;
}

Expected<void> SpscProducer::try_send(std::span<const std::byte> msg) noexcept {
  auto buf = TryReserveImpl(msg.size());
  if (!buf) return MakeUnexpected(buf.error());
  if (!msg.empty()) std::memcpy(buf->data(), msg.data(), msg.size());
  commit();
  return {};
}

Expected<void> SpscProducer::send(std::span<const std::byte> msg, const WaitOptions& opts) {
  auto buf = reserve(msg.size(), opts);
  if (!buf) return MakeUnexpected(buf.error());
  if (!msg.empty()) std::memcpy(buf->data(), msg.data(), msg.size());
  commit();
  return {};
}

void SpscProducer::close() noexcept {
  if (closed_) return;
  commit();
  closed_ = true;
  // After the final commit (program order + seq_cst): see the file comment.
  region_.control->writer_closed.store(1, std::memory_order_seq_cst);
  region_.control->data_event.NotifyAll();
}

bool SpscProducer::reader_closed() const noexcept {
  return region_.control->reader_closed.load(std::memory_order_seq_cst) != 0;
}

// ---------------------------------------------------------------- SpscConsumer

Expected<SpscConsumer> SpscConsumer::Claim(std::shared_ptr<const Segment> segment,
                                           SpscRegion region) {
  auto owner = ClaimOwnerWord(region.control->consumer_owner);
  if (!owner) return MakeUnexpected(owner.error());
  return SpscConsumer(std::move(segment), region, *owner);
}

SpscConsumer::SpscConsumer(std::shared_ptr<const Segment> seg, SpscRegion region, uint64_t owner)
    : segment_(std::move(seg)), region_(region), owner_word_(owner), mask_(region.capacity - 1) {
  // Resume after the last release of a previous (possibly dead) consumer.
  read_pos_ = region_.control->read_pos.load(std::memory_order_seq_cst);
  cursor_ = read_pos_;
  cached_write_pos_ = read_pos_;
}

SpscConsumer::SpscConsumer(SpscConsumer&& o) noexcept
    : segment_(std::move(o.segment_)),
      region_(std::exchange(o.region_, SpscRegion{})),
      owner_word_(std::exchange(o.owner_word_, 0)),
      mask_(o.mask_),
      read_pos_(o.read_pos_),
      cursor_(o.cursor_),
      cached_write_pos_(o.cached_write_pos_),
      peeked_end_(o.peeked_end_),
      peeked_offset_(o.peeked_offset_),
      peeked_length_(o.peeked_length_),
      peeked_(std::exchange(o.peeked_, false)) {}

SpscConsumer& SpscConsumer::operator=(SpscConsumer&& o) noexcept {
  if (this != &o) {
    this->~SpscConsumer();
    new (this) SpscConsumer(std::move(o));
  }
  return *this;
}

SpscConsumer::~SpscConsumer() {
  if (region_.control == nullptr) return;
  // Messages advanced past were consumed; a merely peeked one stays for the next reader.
  peeked_ = false;
  release();
  ReleaseOwnerWord(region_.control->consumer_owner, owner_word_);
}

Expected<std::span<const std::byte>> SpscConsumer::try_peek() noexcept {
  const std::byte* data = region_.data;
  const uint64_t cap = region_.capacity;
  // Idempotent: return the record validated before (its header is not re-read).
  if (peeked_) return std::span<const std::byte>(data + peeked_offset_, peeked_length_);
  for (;;) {
    if (cursor_ == cached_write_pos_) {
      // cursor_ starts at the shared read_pos: a misaligned one would let the 8-byte
      // header read below cross the end of the data region. Records keep it aligned.
      if (cursor_ % kRecordAlign != 0) return RingErrc::kCorrupt;
      SpscControl* ctl = region_.control;
      // SYNC(data): acquire side (seq_cst load).
      uint64_t w = ctl->write_pos.load(std::memory_order_seq_cst);
      if (w == cursor_ && ctl->writer_closed.load(std::memory_order_seq_cst) != 0) {
        // A commit that preceded close() is visible now (see the file comment).
        w = ctl->write_pos.load(std::memory_order_seq_cst);
        if (w == cursor_) return RingErrc::kClosed;
      }
      if (w < cursor_ || w - read_pos_ > cap) return RingErrc::kCorrupt;
      cached_write_pos_ = w;
      if (w == cursor_) return RingErrc::kWouldBlock;
    }
    const uint64_t idx = cursor_ & mask_;
    const uint64_t avail = cached_write_pos_ - cursor_;
    const uint64_t to_end = cap - idx;
    if (avail < kRecordHeaderSize) return RingErrc::kCorrupt;
    RecordHeader h;
    std::memcpy(&h, data + idx, sizeof(h));  // one read: the peer cannot change it under us
    if (h.type == kRecordPadding) {
      if (uint64_t{h.length} + kRecordHeaderSize != to_end || to_end > avail) {
        return RingErrc::kCorrupt;
      }
      cursor_ += to_end;
      continue;
    }
    const uint64_t rec = RecordSize(h.length);
    if (h.type != kRecordData || h.length > max_message_size() || rec > avail || rec > to_end) {
      return RingErrc::kCorrupt;
    }
    peeked_ = true;
    peeked_end_ = cursor_ + rec;
    peeked_offset_ = idx + kRecordHeaderSize;
    peeked_length_ = h.length;
    return std::span<const std::byte>(data + idx + kRecordHeaderSize, h.length);
  }
}

Expected<std::span<const std::byte>> SpscConsumer::peek(const WaitOptions& opts) {
  return internal::BlockingWait([&] { return try_peek(); }, region_.control->data_event,
                                &region_.control->producer_owner, opts);
}

Expected<void> SpscConsumer::advance() noexcept {
  if (!peeked_) return RingErrc::kBadState;
  cursor_ = peeked_end_;
  peeked_ = false;
  return {};
}

void SpscConsumer::release() noexcept {
  if (peeked_) {
    cursor_ = peeked_end_;
    peeked_ = false;
  }
  if (cursor_ == read_pos_) return;
  read_pos_ = cursor_;
  // SYNC(space): release side (seq_cst store); our reads of the records are done.
  region_.control->read_pos.store(read_pos_, std::memory_order_seq_cst);
  region_.control->space_event.NotifyAll();
}

Expected<size_t> SpscConsumer::try_recv(std::span<std::byte> buf) noexcept {
  auto msg = try_peek();
  if (!msg) return MakeUnexpected(msg.error());
  if (msg->size() > buf.size()) return RingErrc::kTooLarge;
  if (!msg->empty()) std::memcpy(buf.data(), msg->data(), msg->size());
  const size_t n = msg->size();
  release();
  return n;
}

Expected<size_t> SpscConsumer::recv(std::span<std::byte> buf, const WaitOptions& opts) {
  auto msg = peek(opts);
  if (!msg) return MakeUnexpected(msg.error());
  if (msg->size() > buf.size()) return RingErrc::kTooLarge;
  if (!msg->empty()) std::memcpy(buf.data(), msg->data(), msg->size());
  const size_t n = msg->size();
  release();
  return n;
}

void SpscConsumer::close() noexcept {
  release();
  region_.control->reader_closed.store(1, std::memory_order_seq_cst);
  region_.control->space_event.NotifyAll();
}

uint64_t SpscConsumer::size_bytes() const noexcept {
  // Snapshot: relaxed is enough for an estimate.
  const uint64_t w = region_.control->write_pos.load(std::memory_order_relaxed);
  return w >= read_pos_ ? w - read_pos_ : 0;
}

// ---------------------------------------------------------------- SpscRing

namespace {

// A segment whose creator and role holders are all dead can be replaced.
bool IsStaleSpscSegment(std::string_view name) {
  auto seg = Segment::Open(name);
  if (!seg) return false;
  auto g = ValidateSpscSegment(*seg, SegmentKind::kSpscRing, 1);
  if (!g) return false;  // not ours to judge: leave foreign or corrupt files alone
  if (IsAlivePacked(g->creator)) return false;
  SpscRegion r = SpscRegionAt(*seg, *g, 0);
  for (uint64_t owner : {r.control->producer_owner.load(std::memory_order_acquire),
                         r.control->consumer_owner.load(std::memory_order_acquire)}) {
    if (owner != 0 && IsAlivePacked(owner)) return false;
  }
  return true;
}

}  // namespace

Expected<SpscRing> SpscRing::Create(std::string_view name, uint64_t capacity,
                                    const CreateOptions& options) {
  auto size = SpscSegmentSize(1, capacity);
  if (!size) return MakeUnexpected(size.error());
  auto seg = Segment::Create(name, *size, options.unlink, options.mode);
  if (!seg && options.reclaim_stale && seg.error() == std::errc::file_exists &&
      IsStaleSpscSegment(name)) {
    std::string n(name);
    ::shm_unlink(n.c_str());
    seg = Segment::Create(name, *size, options.unlink, options.mode);
  }
  if (!seg) return MakeUnexpected(seg.error());
  InitSpscSegment(*seg, SegmentKind::kSpscRing, 1, capacity);
  auto shared = std::make_shared<Segment>(std::move(*seg));
  auto g = ValidateSpscSegment(*shared, SegmentKind::kSpscRing, 1);
  if (!g) return MakeUnexpected(g.error());
  return SpscRing(std::move(shared), *g);
}

Expected<SpscRing> SpscRing::Attach(std::string_view name) {
  auto seg = Segment::Open(name);
  if (!seg) return MakeUnexpected(seg.error());
  auto g = ValidateSpscSegment(*seg, SegmentKind::kSpscRing, 1);
  if (!g) return MakeUnexpected(g.error());
  return SpscRing(std::make_shared<Segment>(std::move(*seg)), *g);
}

Expected<SpscProducer> SpscRing::Producer() const {
  return SpscProducer::Claim(segment_, SpscRegionAt(*segment_, geometry_, 0));
}

Expected<SpscConsumer> SpscRing::Consumer() const {
  return SpscConsumer::Claim(segment_, SpscRegionAt(*segment_, geometry_, 0));
}

Expected<void> SpscRing::Unlink() const { return segment_->Unlink(); }

}  // namespace shmlink
