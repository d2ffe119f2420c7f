// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Memory-ordering argument for the SPSC ring (labels are referenced at each atomic):
//
// SYNC(data): each record's first 8 bytes are its header word (spsc_layout.h), and the
//   header word is the commit word. reserve() zeroes the slot after each new record (the
//   terminator) and writes the header words of all but the batch's first record (relaxed:
//   nobody can reach them yet, see below); the caller writes payloads with plain stores.
//   commit() then stores the batch's first header word with release. The consumer loads
//   the header word at its position (seq_cst, includes acquire) and reads the record only
//   after seeing a non-zero one. Everything the producer wrote before that release store
//   - this record's payload, the later records' headers and payloads of the batch, the
//   terminator after the batch - is visible to the consumer once it sees the word. It
//   reaches a later record of the batch only by following the chain from the first one,
//   so one release store publishes the whole batch, in order. A stale word (an old header
//   or old payload bytes from an earlier lap) can never be read at the consumer's
//   position: that slot was zeroed before the release store the consumer acquired (the
//   terminator invariant in spsc_layout.h), and only the next publication overwrites it.
//   Why not a lap tag in the header, or a consumer zeroing what it read: a tag does not
//   stop stale *payload* bytes (variable-length records) that happen to equal the expected
//   header; zeroing by the consumer costs writes to every consumed line (1 MiB messages:
//   1 MiB of extra stores). The terminator costs one 8-byte store per record into a line
//   the producer writes anyway, plus 8 bytes of capacity.
// SYNC(space): the consumer finishes reading a record, then stores read_pos (seq_cst,
//   includes release). The producer loads read_pos (includes acquire) before reusing those
//   bytes, so its new writes cannot overtake the consumer's reads.
// SYNC(event-count): the sleep protocol (event_count.h) needs a single total order between
//   "publish / load waiters" (producer) and "announce waiter / re-check" (consumer). The
//   consumer's re-check is a seq_cst load of the header word. The producer's publication
//   is a release store followed by a seq_cst fence, then the seq_cst load of waiters: if
//   the waiter's re-check read the old word, it is coherence-ordered before the release
//   store, hence before the fence in the total order ([atomics.order]/4.2); the waiter's
//   announce precedes its re-check, and the fence precedes the load of waiters, so that
//   load sees the announcement. On x86-64 the fence is one locked instruction per
//   commit() (per batch, not per message), the same price as the seq_cst store of
//   write_pos it replaces. read_pos keeps its seq_cst store (the producer waits on it).
// SYNC(resume): write_pos is stored (release) after the batch's header, before the fence;
//   a producer taking the role over loads it (seq_cst) and then follows any headers
//   published beyond it (acquire) - a predecessor that died between the two stores.
// Close: close() publishes a kRecordClose header word at the published end (the terminator
//   slot, SYNC(data)), then sets writer_closed (seq_cst, read by producers taking over),
//   fence and notify as above. The consumer drains to it and then returns kClosed.
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <utility>

#include <shmlink/blocking_wait.h>
#include <shmlink/log.h>
#include <shmlink/process_identity.h>
#include <shmlink/readiness_notifier.h>
#include <shmlink/spsc_ring.h>

namespace shmlink {

namespace {

// The header word at `idx` of a data region (8-aligned: records are).
std::atomic_ref<uint64_t> WordAt(const std::byte* data, uint64_t idx) noexcept {
  return std::atomic_ref<uint64_t>(
      *reinterpret_cast<uint64_t*>(const_cast<std::byte*>(data) + idx));
}

// Logs the terminal errors of a blocking call (never on the data path's success).
template <typename T>
const T& LogIfTerminal(const T& r, const Segment& seg, const char* side) {
  if (!r) {
    if (r.error() == RingErrc::kPeerDead) {
      LogEvent(LogLevel::kInfo, "peer-dead", seg.name(), "the %s's peer died", side);
    } else if (r.error() == RingErrc::kCorrupt) {
      LogEvent(LogLevel::kInfo, "corruption", seg.name(), "%s found the ring inconsistent", side);
    }
  }
  return r;
}

void LogClaim(const Segment& seg, const char* role, bool took_over) {
  if (took_over) {
    LogEvent(LogLevel::kInfo, "takeover", seg.name(), "%s role taken over from a dead holder",
             role);
  } else {
    LogEvent(LogLevel::kDebug, "claim", seg.name(), "%s role claimed", role);
  }
}

}  // namespace

// ---------------------------------------------------------------- SpscProducer

Expected<SpscProducer> SpscProducer::Claim(std::shared_ptr<const Segment> segment,
                                           SpscRegion region) {
  bool took_over = false;
  auto owner = ClaimOwnerWord(region.control->producer_owner, &took_over);
  if (!owner) return MakeUnexpected(owner.error());
  // We hold the role now: its counters are ours to write.
  if (took_over) CountAdd(region.control->producer_stats.takeovers, 1);
  LogClaim(*segment, "producer", took_over);
  SpscProducer p(std::move(segment), region, *owner);
  if (p.corrupt_) {
    LogEvent(LogLevel::kInfo, "corruption", p.segment_->name(),
             "producer found the ring inconsistent when taking the role");
  }
  return p;
}

SpscProducer::SpscProducer(std::shared_ptr<const Segment> seg, SpscRegion region, uint64_t owner)
    : segment_(std::move(seg)),
      region_(region),
      owner_word_(owner),
      claimer_pid_(::getpid()),
      mask_(region.capacity - 1) {
  // Counters continue where the previous holder left them. Relaxed: statistics, and the
  // owner CAS (acq_rel) already ordered us after the previous holder's last stores.
  committed_msgs_ = region_.control->producer_stats.messages.load(std::memory_order_relaxed);
  committed_bytes_ = region_.control->producer_stats.bytes.load(std::memory_order_relaxed);
  // A previous producer may have died after committing: resume after its last commit.
  // The owner CAS (acq_rel) ordered us after it. SYNC(resume): seq_cst load.
  committed_pos_ = region_.control->write_pos.load(std::memory_order_seq_cst);
  cached_read_pos_ = region_.control->read_pos.load(std::memory_order_seq_cst);
  // Positions we index with must be record-aligned and consistent, or a hostile/broken
  // segment could make us write a record header past the end of the data region. The
  // terminator slot at the published end must lie outside the unreleased bytes.
  corrupt_ = (committed_pos_ % kRecordAlign) != 0 || cached_read_pos_ > committed_pos_ ||
             committed_pos_ - cached_read_pos_ + kRecordHeaderSize > region_.capacity;
  if (corrupt_) cached_read_pos_ = committed_pos_;
  closed_ = region_.control->writer_closed.load(std::memory_order_seq_cst) != 0;
  if (!corrupt_) ResumeInterruptedCommit();
  write_pos_ = committed_pos_;
}

// A predecessor may have died between publishing a batch's header and storing write_pos:
// follow the published headers from write_pos to the terminator (at most one lap).
void SpscProducer::ResumeInterruptedCommit() noexcept {
  const uint64_t cap = region_.capacity;
  uint64_t pos = committed_pos_;
  for (;;) {
    const uint64_t idx = pos & mask_;
    const uint64_t to_end = cap - idx;
    // SYNC(resume): acquire, pairs with the predecessor's release store of the header.
    const uint64_t word = WordAt(region_.data, idx).load(std::memory_order_acquire);
    if (word == 0) break;
    const uint32_t type = RecordWordType(word);
    const uint64_t length = RecordWordLength(word);
    if (type == kRecordClose) {
      closed_ = true;  // the predecessor closed the stream before setting writer_closed
      break;
    }
    uint64_t next;
    if (type == kRecordPadding && length + kRecordHeaderSize == to_end) {
      next = pos + to_end;
    } else if (type == kRecordData && length <= max_message_size() &&
               RecordSize(length) <= to_end) {
      next = pos + RecordSize(length);
    } else {
      corrupt_ = true;
      return;
    }
    if (next - cached_read_pos_ + kRecordHeaderSize > cap) {
      corrupt_ = true;
      return;
    }
    pos = next;
  }
  if (pos != committed_pos_) {
    // SYNC(resume): release, as in commit().
    region_.control->write_pos.store(pos, std::memory_order_release);
    committed_pos_ = pos;
  }
}

SpscProducer::SpscProducer(SpscProducer&& o) noexcept
    : segment_(std::move(o.segment_)),
      region_(std::exchange(o.region_, SpscRegion{})),
      owner_word_(std::exchange(o.owner_word_, 0)),
      claimer_pid_(o.claimer_pid_),
      mask_(o.mask_),
      write_pos_(o.write_pos_),
      committed_pos_(o.committed_pos_),
      cached_read_pos_(o.cached_read_pos_),
      first_word_(o.first_word_),
      pending_bytes_(std::exchange(o.pending_bytes_, 0)),
      committed_msgs_(o.committed_msgs_),
      committed_bytes_(o.committed_bytes_),
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
  // An inherited copy in a forked child: the role is the claimer's, not ours to release.
  if (::getpid() != claimer_pid_) return;
  cancel();
  ReleaseOwnerWord(region_.control->producer_owner, owner_word_);
}

// Writes the header word of the record at `pos`: deferred to commit() for the batch's first
// record (its store publishes the batch), else stored now. SYNC(data): relaxed, published
// by commit()'s later release store (the consumer cannot reach this slot before).
void SpscProducer::PutWord(uint64_t pos, uint64_t word) noexcept {
  if (pos == committed_pos_) {
    first_word_ = word;
  } else {
    WordAt(region_.data, pos & mask_).store(word, std::memory_order_relaxed);
  }
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
  // + the terminator slot after the new record, which must not be unreleased bytes.
  if (write_pos_ + need + kRecordHeaderSize - cached_read_pos_ > cap) {
    // SYNC(space): acquire side (seq_cst load).
    const uint64_t r = ctl->read_pos.load(std::memory_order_seq_cst);
    if (r < cached_read_pos_ || r > committed_pos_) return RingErrc::kCorrupt;
    cached_read_pos_ = r;
    if (ctl->reader_closed.load(std::memory_order_seq_cst) != 0) return RingErrc::kClosed;
    if (write_pos_ + need + kRecordHeaderSize - r > cap) return RingErrc::kWouldBlock;
  }
  std::byte* data = region_.data;
  if (rec > to_end) {
    PutWord(write_pos_,
            MakeRecordWord(kRecordPadding, static_cast<uint32_t>(to_end - kRecordHeaderSize)));
    write_pos_ += to_end;
    idx = 0;
  }
  // SYNC(data): the terminator, relaxed: published by commit()'s release store. It is
  // stored before this record's header can be published, and never inside [committed_pos_,
  // write_pos_): the space check keeps it off every slot of this batch.
  WordAt(data, (idx + rec) & mask_).store(0, std::memory_order_relaxed);
  PutWord(write_pos_, MakeRecordWord(kRecordData, static_cast<uint32_t>(n)));
  write_pos_ += rec;
  ++pending_count_;
  pending_bytes_ += n;
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
  return LogIfTerminal(
      internal::BlockingWait([&] { return TryReserveImpl(n); }, region_.control->space_event,
                             &region_.control->consumer_owner, opts,
                             &region_.control->producer_stats),
      *segment_, "producer");
}

void SpscProducer::commit() noexcept {
  if (write_pos_ == committed_pos_) return;
  SpscControl* ctl = region_.control;
  // SYNC(data): release side; publishes every record of the batch (see the file comment).
  WordAt(region_.data, committed_pos_ & mask_).store(first_word_, std::memory_order_release);
  // SYNC(resume): release; only takeovers and size_bytes() read it.
  ctl->write_pos.store(write_pos_, std::memory_order_release);
  // Counters: relaxed stores of our running totals (we are their only writer) on line 0,
  // which the store above just wrote (role_stats.h).
  committed_msgs_ += pending_count_;
  committed_bytes_ += pending_bytes_;
  ctl->producer_stats.messages.store(committed_msgs_, std::memory_order_relaxed);
  ctl->producer_stats.bytes.store(committed_bytes_, std::memory_order_relaxed);
  committed_pos_ = write_pos_;
  pending_count_ = 0;
  pending_bytes_ = 0;
  // SYNC(event-count): orders the header store before NotifyAll's load of waiters (and
  // before callers' own seq_cst loads of waiters, e.g. transport's doorbell).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (ctl->data_event.NotifyAll()) CountAdd(ctl->producer_stats.wake_calls, 1);
}

void SpscProducer::cancel() noexcept {
  write_pos_ = committed_pos_;
  pending_count_ = 0;
  pending_bytes_ = 0;
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
  // SYNC(data): the end-of-stream mark in the terminator slot (free: see the constructor's
  // and reserve's checks; skipped on a corrupt ring, whose positions we do not trust).
  if (!corrupt_) {
    WordAt(region_.data, committed_pos_ & mask_)
        .store(MakeRecordWord(kRecordClose, 0), std::memory_order_release);
  }
  // For producers taking the role over (they must not write past the mark).
  region_.control->writer_closed.store(1, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);  // SYNC(event-count), as in commit()
  if (region_.control->data_event.NotifyAll()) {
    CountAdd(region_.control->producer_stats.wake_calls, 1);
  }
}

bool SpscProducer::reader_closed() const noexcept {
  return region_.control->reader_closed.load(std::memory_order_seq_cst) != 0;
}

// ---------------------------------------------------------------- SpscConsumer

Expected<SpscConsumer> SpscConsumer::Claim(std::shared_ptr<const Segment> segment,
                                           SpscRegion region) {
  bool took_over = false;
  auto owner = ClaimOwnerWord(region.control->consumer_owner, &took_over);
  if (!owner) return MakeUnexpected(owner.error());
  if (took_over) CountAdd(region.control->consumer_stats.takeovers, 1);
  LogClaim(*segment, "consumer", took_over);
  SpscConsumer c(std::move(segment), region, *owner);
  if (c.corrupt_) {
    LogEvent(LogLevel::kInfo, "corruption", c.segment_->name(),
             "consumer found the ring inconsistent when taking the role");
  }
  return c;
}

SpscConsumer::SpscConsumer(std::shared_ptr<const Segment> seg, SpscRegion region, uint64_t owner)
    : segment_(std::move(seg)),
      region_(region),
      owner_word_(owner),
      claimer_pid_(::getpid()),
      mask_(region.capacity - 1) {
  // Counters continue where the previous holder left them (relaxed: as the producer's).
  consumed_msgs_ = region_.control->consumer_stats.messages.load(std::memory_order_relaxed);
  consumed_bytes_ = region_.control->consumer_stats.bytes.load(std::memory_order_relaxed);
  // Resume after the last release of a previous (possibly dead) consumer.
  // SYNC(space)/SYNC(data): the previous consumer stored read_pos after acquiring the
  // headers below it; their terminator invariant carries over to us.
  read_pos_ = region_.control->read_pos.load(std::memory_order_seq_cst);
  cursor_ = read_pos_;
  // Records keep positions 8-aligned; a misaligned one would make the 8-byte header read
  // cross the end of the data region.
  corrupt_ = read_pos_ % kRecordAlign != 0;
}

SpscConsumer::SpscConsumer(SpscConsumer&& o) noexcept
    : segment_(std::move(o.segment_)),
      region_(std::exchange(o.region_, SpscRegion{})),
      owner_word_(std::exchange(o.owner_word_, 0)),
      claimer_pid_(o.claimer_pid_),
      mask_(o.mask_),
      read_pos_(o.read_pos_),
      cursor_(o.cursor_),
      peeked_end_(o.peeked_end_),
      peeked_offset_(o.peeked_offset_),
      peeked_length_(o.peeked_length_),
      consumed_msgs_(o.consumed_msgs_),
      consumed_bytes_(o.consumed_bytes_),
      peeked_(std::exchange(o.peeked_, false)),
      corrupt_(o.corrupt_),
      notifier_(std::move(o.notifier_)) {}

SpscConsumer& SpscConsumer::operator=(SpscConsumer&& o) noexcept {
  if (this != &o) {
    this->~SpscConsumer();
    new (this) SpscConsumer(std::move(o));
  }
  return *this;
}

SpscConsumer::~SpscConsumer() {
  if (region_.control != nullptr && ::getpid() != claimer_pid_) {
    // An inherited copy in a forked child: the role and the read position are the
    // claimer's. The notifier's thread exists only there (joining it here would wait for
    // ever): leave the object, whose fd the child's exit closes.
    (void)notifier_.release();
    return;
  }
  notifier_.reset();  // stops its thread before the role (and the mapping) can go
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
  if (corrupt_) return RingErrc::kCorrupt;
  for (;;) {
    const uint64_t idx = cursor_ & mask_;
    const uint64_t to_end = cap - idx;
    // SYNC(data): acquire side; seq_cst for SYNC(event-count) (a plain load on x86-64).
    // One read of the word: the peer cannot change the fields between our checks.
    const uint64_t word = WordAt(data, idx).load(std::memory_order_seq_cst);
    if (word == 0) {  // the terminator: nothing published
      if (notifier_ == nullptr || !notifier_->writer_dead()) return RingErrc::kWouldBlock;
      // fd()'s thread found the writer dead. As BlockingWait, look again after that
      // evidence (seq_cst, SYNC(data)): what it committed before dying is delivered first.
      if (WordAt(data, idx).load(std::memory_order_seq_cst) == 0) return RingErrc::kPeerDead;
      continue;
    }
    const uint32_t type = RecordWordType(word);
    const uint64_t length = RecordWordLength(word);
    // Every check below is of values an intact producer never writes; `cursor_ - read_pos_`
    // bounds the unreleased bytes (the producer keeps them + the terminator <= capacity).
    if (type == kRecordPadding) {
      if (length + kRecordHeaderSize != to_end ||
          cursor_ - read_pos_ + to_end + kRecordHeaderSize > cap) {
        return RingErrc::kCorrupt;
      }
      cursor_ += to_end;
      continue;
    }
    if (type == kRecordClose) return length == 0 ? RingErrc::kClosed : RingErrc::kCorrupt;
    const uint64_t rec = RecordSize(length);
    if (type != kRecordData || length > max_message_size() || rec > to_end ||
        cursor_ - read_pos_ + rec + kRecordHeaderSize > cap) {
      return RingErrc::kCorrupt;
    }
    peeked_ = true;
    peeked_end_ = cursor_ + rec;
    peeked_offset_ = idx + kRecordHeaderSize;
    peeked_length_ = static_cast<uint32_t>(length);
    return std::span<const std::byte>(data + idx + kRecordHeaderSize, length);
  }
}

Expected<std::span<const std::byte>> SpscConsumer::peek(const WaitOptions& opts) {
  return LogIfTerminal(
      internal::BlockingWait([&] { return try_peek(); }, region_.control->data_event,
                             &region_.control->producer_owner, opts,
                             &region_.control->consumer_stats),
      *segment_, "consumer");
}

Expected<void> SpscConsumer::advance() noexcept {
  if (!peeked_) return RingErrc::kBadState;
  cursor_ = peeked_end_;
  peeked_ = false;
  ++consumed_msgs_;
  consumed_bytes_ += peeked_length_;
  return {};
}

void SpscConsumer::release() noexcept {
  if (peeked_) {
    cursor_ = peeked_end_;
    peeked_ = false;
    ++consumed_msgs_;
    consumed_bytes_ += peeked_length_;
  }
  if (cursor_ == read_pos_) return;
  read_pos_ = cursor_;
  SpscControl* ctl = region_.control;
  // SYNC(space): release side (seq_cst store); our reads of the records are done.
  ctl->read_pos.store(read_pos_, std::memory_order_seq_cst);
  // Counters: relaxed stores of our running totals (single writer) on line 1, which the
  // store above just wrote (role_stats.h).
  ctl->consumer_stats.messages.store(consumed_msgs_, std::memory_order_relaxed);
  ctl->consumer_stats.bytes.store(consumed_bytes_, std::memory_order_relaxed);
  if (ctl->space_event.NotifyAll()) CountAdd(ctl->consumer_stats.wake_calls, 1);
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
  if (region_.control->space_event.NotifyAll()) {
    CountAdd(region_.control->consumer_stats.wake_calls, 1);
  }
}

Expected<int> SpscConsumer::fd() {
  if (region_.control == nullptr) return RingErrc::kBadState;  // moved from
  if (!notifier_) {
    SpscControl* ctl = region_.control;
    ReadinessSource src;
    src.event = &ctl->data_event;
    src.snapshot = [ctl] {
      ReadinessSnapshot s;
      // SYNC(event-count): seq_cst, the notifier's re-check. commit() stores write_pos
      // (release) before its seq_cst fence and NotifyAll, like the header word: a re-check
      // that reads an older write_pos precedes that fence in the total order, so the
      // producer's load of `waiters` sees the thread's announcement (the file comment's
      // argument with write_pos for the header word). close() stores writer_closed
      // (seq_cst), then the same fence and notify.
      s.progress = ctl->write_pos.load(std::memory_order_seq_cst);
      s.closed = ctl->writer_closed.load(std::memory_order_seq_cst);
      // Relaxed: only compared with the owner found dead (a hint, as in BlockingWait).
      s.owner = ctl->producer_owner.load(std::memory_order_relaxed);
      return s;
    };
    src.writer_died = [ctl] { return internal::PackedOwnerDied(&ctl->producer_owner); };
    auto n = ReadinessNotifier::Start(std::move(src));
    if (!n) return MakeUnexpected(n.error());
    notifier_ = std::move(*n);
  }
  return notifier_->fd();
}

uint64_t SpscConsumer::size_bytes() const noexcept {
  // Snapshot: relaxed is enough for an estimate.
  const uint64_t w = region_.control->write_pos.load(std::memory_order_relaxed);
  return w >= read_pos_ ? w - read_pos_ : 0;
}

// ---------------------------------------------------------------- SpscRing

namespace {

// A segment whose creator and role holders are all dead can be replaced.
bool IsStaleSpscSegment(const Segment& seg) {
  auto g = ValidateSpscSegment(seg, SegmentKind::kSpscRing, 1);
  if (!g) return false;  // not ours to judge: leave foreign or corrupt files alone
  if (IsAlivePacked(g->creator)) return false;
  SpscRegion r = SpscRegionAt(seg, *g, 0);
  for (uint64_t owner : {r.control->producer_owner.load(std::memory_order_acquire),
                         r.control->consumer_owner.load(std::memory_order_acquire)}) {
    if (owner != 0 && IsAlivePacked(owner)) return false;
  }
  return true;
}

// Removes `name` if it is a stale ring: decided on one open file, and unlinked only if the
// name still refers to that file (UnlinkShmIfSame).
bool RemoveIfStale(std::string_view name) {
  auto seg = Segment::Open(name);
  // Gone since our create failed (another cleaner removed it): the name may be free now.
  if (!seg) return seg.error() == std::errc::no_such_file_or_directory;
  if (!IsStaleSpscSegment(*seg)) return false;
  auto removed = UnlinkShmIfSame(name, seg->fd());
  if (removed && *removed) {
    LogEvent(LogLevel::kInfo, "stale-removed", name, "creator and role holders are dead");
  }
  // Removed by us, or by another cleaner meanwhile: worth creating again either way (if
  // the name now names a new segment, the create fails with EEXIST, as it should).
  return true;
}

}  // namespace

Expected<SpscRing> SpscRing::Create(std::string_view name, uint64_t capacity,
                                    const CreateOptions& options) {
  auto size = SpscSegmentSize(1, capacity);
  if (!size) return MakeUnexpected(size.error());
  auto seg = Segment::Create(name, *size, options.unlink, options.mode);
  if (!seg && options.reclaim_stale && seg.error() == std::errc::file_exists &&
      RemoveIfStale(name)) {
    seg = Segment::Create(name, *size, options.unlink, options.mode);
  }
  if (!seg) return MakeUnexpected(seg.error());
  InitSpscSegment(*seg, SegmentKind::kSpscRing, 1, capacity);
  LogEvent(LogLevel::kInfo, "create", name, "spsc-ring, capacity %llu",
           static_cast<unsigned long long>(capacity));
  auto shared = std::make_shared<Segment>(std::move(*seg));
  auto g = ValidateSpscSegment(*shared, SegmentKind::kSpscRing, 1);
  if (!g) return MakeUnexpected(g.error());
  return SpscRing(std::move(shared), *g);
}

Expected<SpscRing> SpscRing::Attach(std::string_view name) {
  auto seg = Segment::Open(name);
  if (!seg) return MakeUnexpected(seg.error());
  auto g = ValidateSpscSegment(*seg, SegmentKind::kSpscRing, 1);
  if (!g) {
    if (g.error() != RingErrc::kNotReady) {
      LogEvent(LogLevel::kInfo, "corruption", name, "attach refused: %s",
               g.error().message().c_str());
    }
    return MakeUnexpected(g.error());
  }
  LogEvent(LogLevel::kInfo, "attach", name, "spsc-ring, capacity %llu",
           static_cast<unsigned long long>(g->capacity));
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
