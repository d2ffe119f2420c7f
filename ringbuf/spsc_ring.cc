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
//   published beyond it (acquire) - a predecessor that died between the two stores. The
//   consumer may have read (and released) such a batch already: read_pos then lies beyond
//   write_pos, and the walk starts at read_pos (the records below it were delivered).
// SYNC(owner): a role changes hands through its holder lock (holder_lock.h). A claimant
//   takes the lock (F_OFD_SETLK), then bumps the role's epoch and stores its name in the
//   owner word (seq_cst exchange); a holder that leaves clears its name (seq_cst CAS) and
//   then drops the lock. The previous holder's last stores happen before the successor's
//   first loads: a holder that left released them with its CAS, which our exchange
//   acquires; a holder that died is past its last instruction before the kernel closes its
//   files and drops the lock, and our lock request takes the same kernel spinlock that
//   the release took (a full barrier on every architecture Linux supports), as for topics.
// Sleepers (SYNC(event-count)): only the holder of the consumer role ever sleeps on
//   data_event (peek(), fd()'s notifier thread, a Connection's wait and fileno() arming),
//   and only the producer role's holder sleeps on space_event (reserve(), a Connection's
//   wait for space). A forked child's inherited handle holds no role and must not be used
//   (spsc_ring.h). So when a successor takes a role over from a holder that died, the
//   holder's process has no thread left (the kernel drops the lock only once every thread
//   exited, or at exec, which kills the other threads first): no sleeper of that event is
//   alive, and the successor resets its `waiters` count to 0 before it ever waits itself.
//   Otherwise a consumer killed in its futex wait left `waiters` raised for ever: one
//   needless futex_wake, then an extra shared-line load on every commit.
// Close: close() publishes a kRecordClose header word at the published end (the terminator
//   slot, SYNC(data)), then sets writer_closed (seq_cst, read by producers taking over),
//   fence and notify as above. The consumer drains to it and then returns kClosed.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
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

// A claimed role: its lock, the name we wrote, and whether a dead holder had it.
struct RoleClaim {
  HolderLock lock;
  uint64_t owner = 0;
  bool took_over = false;
};

// Takes `role` of ring `region`: its holder lock first (the arbiter: kRoleTaken while a
// live holder has it, whatever /proc says; nothing read from /proc decides), then the
// owner word (SYNC(owner)). A name still set there belongs to a holder
// that died without leaving: a takeover. A holder that died asleep left its announcement
// in the role's event (see "Sleepers" above): reset it.
Expected<RoleClaim> ClaimRole(const std::shared_ptr<const Segment>& segment,
                              const SpscRegion& region, SpscRole role) {
  if (segment == nullptr || region.control == nullptr) return RingErrc::kInvalidArgument;
  const bool producer = role == SpscRole::kProducer;
  auto lock = HolderLock::Acquire(*segment, producer ? SpscProducerHolderSlot(region.index)
                                                     : SpscConsumerHolderSlot(region.index));
  if (!lock) return MakeUnexpected(lock.error());
  SpscControl* ctl = region.control;
  RoleClaim c;
  c.lock = std::move(*lock);
  // Our name, for tools and to tell "died" from "left". Nobody decides liveness from it
  // (the lock does), so a claim does not depend on /proc: if our start time cannot be
  // read (no /proc, EMFILE) the name is our pid alone (process_identity.h).
  c.owner = SelfIdentityOrPidOnly();
  // SYNC(owner): seq_cst; the epoch before the name (SpscRoleDied reads them around its
  // probe).
  (producer ? ctl->producer_epoch : ctl->consumer_epoch).fetch_add(1, std::memory_order_seq_cst);
  const uint64_t previous = (producer ? ctl->producer_owner : ctl->consumer_owner)
                                .exchange(c.owner, std::memory_order_seq_cst);
  c.took_over = previous != 0;
  if (c.took_over) {
    // SYNC(event-count): seq_cst, like every access to `waiters`. No live process sleeps
    // on this event (see "Sleepers" above); a notifier reading the old count makes at most
    // the one needless wake it would have made anyway.
    (producer ? ctl->space_event : ctl->data_event).waiters.store(0, std::memory_order_seq_cst);
  }
  return c;
}

// Leaving a role: clear our name, then drop the lock (SYNC(owner)), so nobody takes the
// departure for a death.
void LeaveRole(std::atomic<uint64_t>& owner, uint64_t me, HolderLock& lock) noexcept {
  uint64_t expected = me;
  // SYNC(owner): seq_cst (includes release: our stores to the role's state before it).
  owner.compare_exchange_strong(expected, 0, std::memory_order_seq_cst);
  lock.Release();
}

}  // namespace

// ---------------------------------------------------------------- SpscProducer

Expected<SpscProducer> SpscProducer::Claim(std::shared_ptr<const Segment> segment,
                                           SpscRegion region) {
  auto claim = ClaimRole(segment, region, SpscRole::kProducer);
  if (!claim) return MakeUnexpected(claim.error());
  // We hold the role now: its counters are ours to write.
  if (claim->took_over) CountAdd(region.control->producer_stats.takeovers, 1);
  LogClaim(*segment, "producer", claim->took_over);
  SpscProducer p(std::move(segment), region, std::move(claim->lock), claim->owner);
  if (p.corrupt_) {
    LogEvent(LogLevel::kInfo, "corruption", p.segment_->name(),
             "producer found the ring inconsistent when taking the role");
  }
  return p;
}

SpscProducer::SpscProducer(std::shared_ptr<const Segment> seg, SpscRegion region, HolderLock lock,
                           uint64_t owner)
    : segment_(std::move(seg)),
      region_(region),
      lock_(std::move(lock)),
      owner_word_(owner),
      mask_(region.capacity - 1) {
  // Counters continue where the previous holder left them. Relaxed: statistics, and the
  // claim (SYNC(owner)) already ordered us after the previous holder's last stores.
  committed_msgs_ = region_.control->producer_stats.messages.load(std::memory_order_relaxed);
  committed_bytes_ = region_.control->producer_stats.bytes.load(std::memory_order_relaxed);
  // A previous producer may have died after committing: resume after its last commit.
  // The claim ordered us after it. SYNC(resume): seq_cst loads.
  committed_pos_ = region_.control->write_pos.load(std::memory_order_seq_cst);
  cached_read_pos_ = region_.control->read_pos.load(std::memory_order_seq_cst);
  closed_ = region_.control->writer_closed.load(std::memory_order_seq_cst) != 0;
  ResumeInterruptedCommit();
  if (corrupt_) cached_read_pos_ = committed_pos_;
  write_pos_ = committed_pos_;
}

// Finds the true end of the stream when the role is claimed (see spsc_layout.h: a record
// whose header word was published is committed). A predecessor may have died between
// publishing a batch's first header and storing write_pos; the consumer may even have read
// and released that batch, so read_pos passes write_pos. Follow the published headers from
// max(write_pos, read_pos) to the terminator - at most one batch, so never more than
// capacity - 8 bytes past read_pos - and store the end as write_pos. The terminator
// invariant then holds at the end again: the walk stops only at a zero word (or at the
// predecessor's close mark). Positions we index with must be record-aligned and
// consistent, or a hostile/broken segment could make us write a record header past the
// end of the data region: any other state is kCorrupt.
void SpscProducer::ResumeInterruptedCommit() noexcept {
  const uint64_t cap = region_.capacity;
  const uint64_t recorded = committed_pos_;
  if (recorded % kRecordAlign != 0 || cached_read_pos_ % kRecordAlign != 0) {
    corrupt_ = true;
    return;
  }
  if (cached_read_pos_ > recorded) {
    // Only a batch published after write_pos (at most capacity - 8 bytes) can have been
    // read beyond it.
    if (cached_read_pos_ - recorded + kRecordHeaderSize > cap) {
      corrupt_ = true;
      return;
    }
  } else if (recorded - cached_read_pos_ + kRecordHeaderSize > cap) {
    corrupt_ = true;  // the terminator slot would lie inside the unreleased bytes
    return;
  }
  uint64_t pos = std::max(recorded, cached_read_pos_);
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
  committed_pos_ = pos;
  if (pos != recorded) {
    // SYNC(resume): release, as in commit().
    region_.control->write_pos.store(pos, std::memory_order_release);
  }
}

SpscProducer::SpscProducer(SpscProducer&& o) noexcept
    : segment_(std::move(o.segment_)),
      region_(std::exchange(o.region_, SpscRegion{})),
      lock_(std::move(o.lock_)),
      owner_word_(std::exchange(o.owner_word_, 0)),
      mask_(o.mask_),
      write_pos_(std::exchange(o.write_pos_, o.committed_pos_)),
      committed_pos_(o.committed_pos_),
      cached_read_pos_(o.cached_read_pos_),
      first_word_(o.first_word_),
      pending_bytes_(std::exchange(o.pending_bytes_, 0)),
      committed_msgs_(o.committed_msgs_),
      committed_bytes_(o.committed_bytes_),
      pending_count_(std::exchange(o.pending_count_, 0)),
      closed_(std::exchange(o.closed_, false)),
      corrupt_(std::exchange(o.corrupt_, true)) {}  // the source: StateError() says kBadState

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
  if (!lock_.held_here()) return;
  cancel();
  LeaveRole(region_.control->producer_owner, owner_word_, lock_);
}

// The error of a producer that cannot write (closed_ / corrupt_ checked by the caller).
std::error_code SpscProducer::StateError() const noexcept {
  if (closed_) return make_error_code(RingErrc::kClosed);
  if (region_.control == nullptr) return make_error_code(RingErrc::kBadState);  // moved from
  return make_error_code(RingErrc::kCorrupt);
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
  if (closed_ || corrupt_) return MakeUnexpected(StateError());
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
  return LogIfTerminal(internal::BlockingWaitWith(
                           [&] { return TryReserveImpl(n); }, region_.control->space_event,
                           [this] { return SpscRoleDied(*segment_, region_, SpscRole::kConsumer); },
                           opts, &region_.control->producer_stats),
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
  if (closed_ || region_.control == nullptr) return;
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
  if (region_.control == nullptr) return false;  // moved from
  return region_.control->reader_closed.load(std::memory_order_seq_cst) != 0;
}

// ---------------------------------------------------------------- SpscConsumer

Expected<SpscConsumer> SpscConsumer::Claim(std::shared_ptr<const Segment> segment,
                                           SpscRegion region) {
  auto claim = ClaimRole(segment, region, SpscRole::kConsumer);
  if (!claim) return MakeUnexpected(claim.error());
  if (claim->took_over) CountAdd(region.control->consumer_stats.takeovers, 1);
  LogClaim(*segment, "consumer", claim->took_over);
  SpscConsumer c(std::move(segment), region, std::move(claim->lock), claim->owner);
  if (c.corrupt_) {
    LogEvent(LogLevel::kInfo, "corruption", c.segment_->name(),
             "consumer found the ring inconsistent when taking the role");
  }
  return c;
}

SpscConsumer::SpscConsumer(std::shared_ptr<const Segment> seg, SpscRegion region, HolderLock lock,
                           uint64_t owner)
    : segment_(std::move(seg)),
      region_(region),
      lock_(std::move(lock)),
      owner_word_(owner),
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
      lock_(std::move(o.lock_)),
      owner_word_(std::exchange(o.owner_word_, 0)),
      mask_(o.mask_),
      read_pos_(o.read_pos_),
      cursor_(std::exchange(o.cursor_, o.read_pos_)),  // the source has nothing to release
      peeked_end_(o.peeked_end_),
      peeked_offset_(o.peeked_offset_),
      peeked_length_(o.peeked_length_),
      consumed_msgs_(o.consumed_msgs_),
      consumed_bytes_(o.consumed_bytes_),
      peeked_(std::exchange(o.peeked_, false)),
      corrupt_(std::exchange(o.corrupt_, true)),  // the source: try_peek says kBadState
      notifier_(std::move(o.notifier_)) {}

SpscConsumer& SpscConsumer::operator=(SpscConsumer&& o) noexcept {
  if (this != &o) {
    this->~SpscConsumer();
    new (this) SpscConsumer(std::move(o));
  }
  return *this;
}

SpscConsumer::~SpscConsumer() {
  if (region_.control != nullptr && !lock_.held_here()) {
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
  LeaveRole(region_.control->consumer_owner, owner_word_, lock_);
}

Expected<std::span<const std::byte>> SpscConsumer::try_peek() noexcept {
  const std::byte* data = region_.data;
  const uint64_t cap = region_.capacity;
  // Idempotent: return the record validated before (its header is not re-read).
  if (peeked_) return std::span<const std::byte>(data + peeked_offset_, peeked_length_);
  if (corrupt_) return region_.control == nullptr ? RingErrc::kBadState : RingErrc::kCorrupt;
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
  auto r = try_peek();
  if (r || !internal::WouldBlock(r.error())) return r;  // incl. a moved-from consumer
  return LogIfTerminal(internal::BlockingWaitWith(
                           [&] { return try_peek(); }, region_.control->data_event,
                           [this] { return SpscRoleDied(*segment_, region_, SpscRole::kProducer); },
                           opts, &region_.control->consumer_stats),
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
  if (region_.control == nullptr) return;  // moved from
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
    src.writer_died = [seg = segment_.get(), region = region_] {
      return SpscRoleDied(*seg, region, SpscRole::kProducer);
    };
    auto n = ReadinessNotifier::Start(std::move(src));
    if (!n) return MakeUnexpected(n.error());
    notifier_ = std::move(*n);
  }
  return notifier_->fd();
}

uint64_t SpscConsumer::size_bytes() const noexcept {
  if (region_.control == nullptr) return 0;  // moved from
  // Snapshot: relaxed is enough for an estimate.
  const uint64_t w = region_.control->write_pos.load(std::memory_order_relaxed);
  return w >= read_pos_ ? w - read_pos_ : 0;
}

// ---------------------------------------------------------------- SpscRing

namespace {

// A segment whose creator and role holders are all gone can be replaced: the kernel says
// nobody holds its creator slot or any role slot (unknown counts as held).
bool IsStaleSpscSegment(const Segment& seg) {
  auto g = ValidateSpscSegment(seg, SegmentKind::kSpscRing, 1);
  if (!g) return false;  // not ours to judge: leave foreign or corrupt files alone
  return SpscSegmentUnheld(seg, 1);
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
  // The creator lock before the header is published: until then nobody judges the segment
  // (ValidateSpscSegment says kNotReady), so no cleaner can find it unheld while we live.
  auto creator = HolderLock::Acquire(*seg, kCreatorHolderSlot);
  if (!creator) {
    if (options.unlink == UnlinkPolicy::kKeep) (void)seg->Unlink();  // never published
    return MakeUnexpected(creator.error());
  }
  InitSpscSegment(*seg, SegmentKind::kSpscRing, 1, capacity);
  LogEvent(LogLevel::kInfo, "create", name, "spsc-ring, capacity %llu",
           static_cast<unsigned long long>(capacity));
  auto shared = std::make_shared<Segment>(std::move(*seg));
  auto g = ValidateSpscSegment(*shared, SegmentKind::kSpscRing, 1);
  if (!g) return MakeUnexpected(g.error());
  return SpscRing(std::move(shared), *g, std::make_shared<HolderLock>(std::move(*creator)));
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
  return SpscRing(std::make_shared<Segment>(std::move(*seg)), *g, nullptr);
}

SpscRing::SpscRing(SpscRing&& o) noexcept
    : segment_(std::move(o.segment_)),
      geometry_(std::exchange(o.geometry_, SpscGeometry{})),
      creator_lock_(std::move(o.creator_lock_)) {}

SpscRing& SpscRing::operator=(SpscRing&& o) noexcept {
  if (this != &o) {
    segment_ = std::move(o.segment_);
    geometry_ = std::exchange(o.geometry_, SpscGeometry{});
    creator_lock_ = std::move(o.creator_lock_);
  }
  return *this;
}

const Segment& SpscRing::segment() const noexcept {
  static const Segment* const kNone = new Segment();  // leaked: outlives static handles
  return segment_ != nullptr ? *segment_ : *kNone;
}

Expected<SpscProducer> SpscRing::Producer() const {
  if (segment_ == nullptr) return RingErrc::kBadState;  // moved from
  return SpscProducer::Claim(segment_, SpscRegionAt(*segment_, geometry_, 0));
}

Expected<SpscConsumer> SpscRing::Consumer() const {
  if (segment_ == nullptr) return RingErrc::kBadState;  // moved from
  return SpscConsumer::Claim(segment_, SpscRegionAt(*segment_, geometry_, 0));
}

Expected<void> SpscRing::Unlink() const {
  if (segment_ == nullptr) return RingErrc::kBadState;  // moved from
  return segment_->Unlink();
}

}  // namespace shmlink
