// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Memory-ordering argument for the MPMC queue (labels are referenced at each atomic):
//
// SYNC(publish): a producer writes payload and length with plain stores, then moves the
//   slot stamp Claimed(p,i) -> Published(p) with a seq_cst CAS (includes release). A
//   consumer loads the stamp (seq_cst, includes acquire) and claims it with a CAS before it
//   reads length and payload: every byte is visible before the message can be claimed.
// SYNC(slot-free): a consumer finishes reading, then moves Reading(p,j) -> Free(p+N) with a
//   seq_cst CAS (includes release). A producer loads the stamp (includes acquire) before it
//   claims position p+N and writes the payload, so its writes cannot overtake those reads.
// SYNC(claim): claims are CASes on the stamp, so exactly one claimant wins each state
//   transition; the stamp carries the full (54-bit) position, so there is no ABA.
// enqueue_pos / dequeue_pos say where to look first. The stamp read afterwards decides; a
//   stale value only costs another loop iteration. Each is at most one behind the true
//   frontier, because whoever sees a claimed stamp there helps it forward before claiming
//   anything else. Their loads and CASes are seq_cst for SYNC(targeted-wake) only.
// SYNC(targeted-wake): a sleeping consumer waits for the slot at the dequeue position w it
//   last read (seq_cst) before its final re-check; dequeue_pos is monotonic. A producer
//   that publishes position p then loads dequeue_pos (seq_cst) as d. If the consumer's
//   re-check saw p unpublished, that re-check - and the consumer's earlier read of w -
//   precede the publish in the total order, so d >= w: publishing p == w always finds
//   p <= d and notifies. If p > d, no sleeper can be waiting for p, and the producer skips
//   the notification (this keeps a backlog, or a head slot held by a preempted producer,
//   from turning every publish into a futex wake). Symmetrically a consumer freeing
//   position r (slot now Free(r+N)) notifies producers only if r + N <= enqueue_pos.
//   Recovery always notifies both sides.
// Stamps are seq_cst (not merely acq/rel) because the sleeping protocol (event_count.h)
//   needs one total order between "publish stamp, load waiters" and "announce waiter,
//   re-load stamp". On x86-64 a seq_cst CAS costs the same as an acq_rel one.
// SYNC(owner): a registry owner word is written (seq_cst) only by the holder of the entry's
//   HolderLock: the registrant after taking the lock, the leaver before dropping it (a CAS
//   from its own name), a recoverer while it holds the lock. The kernel's lock hand-over
//   (fcntl system calls) orders one holder's accesses before the next one's; seq_cst keeps
//   "owner set" and the lock probe in one order for RecoverMpmcEntry.
// SYNC(revoke): generations (mpmc_layout.h rule 1): a recovery bumps the entry's generation
//   (seq_cst RMW) before it loads the stamps; a handle loads it (seq_cst) after each claim
//   CAS. One of the two sees the other: the claim is taken away by the scan or given up by
//   the handle.
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include <shmlink/blocking_wait.h>
#include <shmlink/holder_lock.h>
#include <shmlink/log.h>
#include <shmlink/mpmc_queue.h>
#include <shmlink/process_identity.h>

namespace shmlink {
namespace {

// A try_ call gives up with kCorrupt after this many loop iterations. Every iteration of a
// healthy queue means another handle made progress, so this only trips on damaged stamps.
constexpr uint32_t kMaxIterations = 1u << 20;

MpmcSlotHeader* SlotByIndex(const MpmcView& v, uint64_t i) {
  return reinterpret_cast<MpmcSlotHeader*>(v.slots + i * v.stride);
}

// Moves a claim counter from `pos` to pos + 1 unless somebody did; returns its new value.
uint64_t HelpForward(std::atomic<uint64_t>& counter, uint64_t pos) {
  uint64_t expected = pos;
  // SYNC(targeted-wake): seq_cst (same cost as acq_rel on x86-64).
  if (counter.compare_exchange_strong(expected, pos + 1, std::memory_order_seq_cst)) {
    return pos + 1;
  }
  return expected;
}

// SYNC(targeted-wake): wake consumers only if one may be waiting for position `pos`. The
// waiters check comes first (SYNC(event-count) needs it after the publication, which it
// is), so the fast path without sleepers reads no line that consumers write.
// `stats`: the notifying handle's counters (wake_calls).
void NotifyConsumersFor(MpmcControl* c, uint64_t pos, RoleStats& stats) {
  if (!c->not_empty.HasSleepers()) return;
  if (pos <= c->dequeue_pos.load(std::memory_order_seq_cst) && c->not_empty.NotifyAll()) {
    CountAdd(stats.wake_calls, 1);
  }
}
// Blocked producers wait for the slot this many positions past the enqueue position.
uint64_t HysteresisSlots(uint64_t slot_count) { return slot_count / 2 - 1; }

// SYNC(targeted-wake): wake producers only if one may be waiting for position `pos`
// (a blocked producer waits for position e + HysteresisSlots(N) with e <= enqueue_pos).
void NotifyProducersFor(MpmcControl* c, uint64_t slot_count, uint64_t pos, RoleStats& stats) {
  if (!c->not_full.HasSleepers()) return;
  if (pos <= c->enqueue_pos.load(std::memory_order_seq_cst) + HysteresisSlots(slot_count) &&
      c->not_full.NotifyAll()) {
    CountAdd(stats.wake_calls, 1);
  }
}

// Runs the liveness check of all participants if `h`'s recovery interval has passed since
// the last one (one fcntl per registered handle, no /proc). True if something was
// recovered.
bool RecoverIfDue(internal::MpmcHandle& h) {
  if (!h.RecoveryDue()) return false;
  const size_t n = internal::RecoverMpmcDead(h.segment(), h.view());
  if (n > 0) {
    LogEvent(LogLevel::kInfo, "peer-dead", h.segment_name(),
             "recovered %zu dead handle(s) of the queue", n);
  }
  return n > 0;
}

// Takes away every claim stamped with registry index `idx`: producer claims become skip
// records, held messages orphans for redelivery. The caller holds HolderLock slot idx and
// has seen no live holder behind the entry (its holder died, or the stamps are strays of a
// revoked handle). Bumps the generation first (mpmc_layout.h rule 1) and quarantines the
// entry past the orphans (rule 2). Every step is a CAS or a monotonic update, so a
// recoverer that dies half-way leaves work that the next one repeats harmlessly.
void TakeAwayClaims(const MpmcView& v, uint32_t idx) noexcept {
  MpmcRegistryEntry& e = v.registry[idx];
  // Relaxed: read by registrants under the entry's lock (the kernel lock orders it).
  e.ever_recovered.store(1, std::memory_order_relaxed);
  // SYNC(revoke): seq_cst RMW before the scan's stamp loads (rule 1).
  e.generation.fetch_add(1, std::memory_order_seq_cst);
  MpmcControl* c = v.control;
  // A holder killed inside its futex wait leaves its sleeper bits set (MpmcEvent): clear
  // them, so notifiers stop paying for it. (A revoked live sleeper wakes at its next
  // liveness check instead of at once; it can do nothing more anyway.)
  c->not_empty.Retire(idx);
  c->not_full.Retire(idx);
  uint64_t last_orphan = 0;
  bool orphaned = false;
  for (uint64_t i = 0; i < v.slot_count; ++i) {
    MpmcSlotHeader* s = SlotByIndex(v, i);
    // SYNC(claim) + SYNC(revoke): seq_cst load; a dead owner's last CAS completed before
    // the kernel dropped its lock; a revoked live owner's later claims are ordered by rule 1.
    uint64_t st = s->stamp.load(std::memory_order_seq_cst);
    while (StampIdx(st) == idx) {
      const uint64_t pos = StampPos(st);
      if (StampState(st) == kSlotClaimed) {
        // Producer died (or was revoked) between claim and publish: a skip record.
        if (s->stamp.compare_exchange_strong(st, MakeStamp(pos, kPublishedSkip, kSlotPublished),
                                             std::memory_order_seq_cst)) {
          // Relaxed: a statistic; nothing is ordered by it.
          c->abandoned.fetch_add(1, std::memory_order_relaxed);
          break;
        }
      } else if (StampState(st) == kSlotReading) {
        // Consumer died holding a message: orphan it for redelivery. Count first, so the
        // adopter's decrement never drives the counter below zero (seq_cst: the count is
        // part of the state a sleeping consumer re-checks).
        c->orphans.fetch_add(1, std::memory_order_seq_cst);
        if (s->stamp.compare_exchange_strong(st, MakeStamp(pos, kMpmcOrphanIdx, kSlotReading),
                                             std::memory_order_seq_cst)) {
          last_orphan = std::max(last_orphan, pos);
          orphaned = true;
          break;
        }
        c->orphans.fetch_sub(1, std::memory_order_seq_cst);
      } else {
        break;  // Free/Published stamps carry no owner (idx 0/1 there mean something else)
      }
    }
  }
  if (orphaned) {
    // Rule 2: not handed out again before dequeue_pos passed last_orphan + N. Monotonic
    // max; seq_cst (slow path), read by registrants under the entry's lock.
    const uint64_t until = last_orphan + v.slot_count + 1;
    uint64_t q = e.quarantine_until.load(std::memory_order_seq_cst);
    while (q < until &&
           !e.quarantine_until.compare_exchange_weak(q, until, std::memory_order_seq_cst)) {
    }
  }
}

// True while registry entry `idx` must not be handed out (mpmc_layout.h rule 2).
bool Quarantined(const MpmcView& v, uint32_t idx) noexcept {
  // seq_cst: slow path (registration); dequeue_pos only grows, so a stale read only delays.
  const uint64_t until = v.registry[idx].quarantine_until.load(std::memory_order_seq_cst);
  return until != 0 && v.control->dequeue_pos.load(std::memory_order_seq_cst) < until;
}

// Called with HolderLock slot idx held by the caller: if the entry's owner word is still set,
// its holder did not leave and does not hold the lock (we do): it died (or was revoked).
// Takes its claims away and frees the entry. True if it recovered something.
bool RecoverLockedEntry(const MpmcView& v, uint32_t idx) noexcept {
  MpmcRegistryEntry& e = v.registry[idx];
  // SYNC(owner): seq_cst; a leaver clears the word before it drops its lock.
  if (e.owner.load(std::memory_order_seq_cst) == 0) return false;
  TakeAwayClaims(v, idx);
  e.role.store(kRoleNone, std::memory_order_relaxed);  // relaxed: ordered by the store below
  // SYNC(owner): seq_cst; the lock we hold is dropped after this.
  e.owner.store(0, std::memory_order_seq_cst);
  // Relaxed: a statistic; several recoverers may count at once, hence the RMW (slow path).
  v.control->recoveries.fetch_add(1, std::memory_order_relaxed);
  return true;
}

// True if stamp `st` is a claim (Claimed/Reading) naming registry entry `idx` < max handles.
bool IsClaimOfEntry(uint64_t st, uint32_t* idx) noexcept {
  const uint64_t state = StampState(st);
  if (state != kSlotClaimed && state != kSlotReading) return false;
  *idx = StampIdx(st);
  return *idx < kMpmcMaxHandles;
}

}  // namespace

// ---------------------------------------------------------------- recovery

namespace internal {

bool RecoverMpmcEntry(const Segment& seg, const MpmcView& v, uint32_t idx) noexcept {
  if (idx >= kMpmcMaxHandles || v.control == nullptr) return false;
  MpmcRegistryEntry& e = v.registry[idx];
  // SYNC(owner): seq_cst; "owner set" must be read before the probe that says "no lock"
  // (a holder writes the word after taking the lock).
  const uint64_t owner = e.owner.load(std::memory_order_seq_cst);
  if (owner == 0) return false;
  // Unknown is not dead: only the kernel's "nobody holds slot idx" lets us go on. No /proc.
  if (ProbeHolder(seg, idx) != HolderState::kDead) return false;
  // Take the entry's lock so that neither a registrant nor another recoverer works on it
  // meanwhile. kRoleTaken: somebody else (registrant or recoverer) got there first; an
  // error (e.g. EMFILE): we cannot act now, a later pass will.
  auto lock = HolderLock::Acquire(seg, idx);
  if (!lock) return false;
  const bool recovered = RecoverLockedEntry(v, idx);
  lock->Release();  // after the owner word was cleared: the next holder sees it free
  if (recovered) {
    v.control->not_empty.NotifyAll();
    v.control->not_full.NotifyAll();
  }
  return recovered;
}

// Stray claims: a Claimed/Reading stamp naming an entry whose owner word is 0 (its claimant
// was revoked, or died while the entry was free). Looked for in the two slots that can wedge
// the queue - the consumers' head (a Claimed stamp there blocks every consumer) and the
// producers' next slot (a Reading stamp there blocks every producer) - and in a window of
// kStrayWindow slots that moves on with every pass (a stray Reading stamp elsewhere holds a
// message that must be redelivered). A full pass costs at most kStrayWindow + 2 stamp loads.
constexpr uint64_t kStrayWindow = 1024;

bool RecoverMpmcStrays(const Segment& seg, const MpmcView& v) noexcept {
  // Where the moving window starts (a hint shared by the process's queues; relaxed: any
  // value is a valid start).
  static std::atomic<uint64_t> cursor{0};
  bool candidate[kMpmcMaxHandles] = {};
  bool any_candidate = false;
  auto look = [&](uint64_t i) {
    // seq_cst: slow path; the decision is re-made under the entry's lock.
    const uint64_t st = SlotByIndex(v, i & v.mask)->stamp.load(std::memory_order_seq_cst);
    uint32_t idx = 0;
    if (!IsClaimOfEntry(st, &idx) || candidate[idx]) return;
    // A live or dead holder's claims are RecoverMpmcEntry's business.
    if (v.registry[idx].owner.load(std::memory_order_seq_cst) != 0) return;
    candidate[idx] = true;
    any_candidate = true;
  };
  // seq_cst loads: slow path; the positions only say where to look.
  look(v.control->dequeue_pos.load(std::memory_order_seq_cst));
  look(v.control->enqueue_pos.load(std::memory_order_seq_cst));
  const uint64_t n = std::min(v.slot_count, kStrayWindow);
  const uint64_t first = cursor.fetch_add(n, std::memory_order_relaxed);
  for (uint64_t k = 0; k < n; ++k) look(first + k);
  if (!any_candidate) return false;
  bool any = false;
  for (uint32_t idx = 0; idx < kMpmcMaxHandles; ++idx) {
    if (!candidate[idx]) continue;
    // Under the entry's lock with its owner word 0, no holder of the entry exists: a
    // registrant names itself only while holding the lock, and a leaver gave its claims up
    // before clearing its name. Every stamp naming idx is then a stray. Lock busy (somebody
    // registers or recovers right now) or no fd: later.
    auto lock = HolderLock::Acquire(seg, idx);
    if (!lock) continue;
    // SYNC(owner): seq_cst; under the entry's lock, so the answer cannot change meanwhile.
    if (v.registry[idx].owner.load(std::memory_order_seq_cst) == 0) {
      TakeAwayClaims(v, idx);
      any = true;
    }
    lock->Release();
  }
  if (any) {
    v.control->not_empty.NotifyAll();
    v.control->not_full.NotifyAll();
  }
  return any;
}

size_t RecoverMpmcDead(const Segment& seg, const MpmcView& v) noexcept {
  if (v.control == nullptr) return 0;
  size_t n = 0;
  for (uint32_t i = 0; i < kMpmcMaxHandles; ++i) {
    // Relaxed: a hint; RecoverMpmcEntry re-reads with seq_cst and asks the kernel.
    if (v.registry[i].owner.load(std::memory_order_relaxed) == 0) continue;
    if (RecoverMpmcEntry(seg, v, i)) ++n;
  }
  if (RecoverMpmcStrays(seg, v)) ++n;
  return n;
}

}  // namespace internal

// ---------------------------------------------------------------- MpmcProducer

MpmcProducer::MpmcProducer(MpmcProducer&& o) noexcept
    : handle_(std::move(o.handle_)),
      total_msgs_(o.total_msgs_),
      total_bytes_(o.total_bytes_),
      claim_pos_(o.claim_pos_),
      claim_size_(o.claim_size_),
      claimed_(std::exchange(o.claimed_, false)) {}

MpmcProducer& MpmcProducer::operator=(MpmcProducer&& o) noexcept {
  if (this != &o) {
    this->~MpmcProducer();
    new (this) MpmcProducer(std::move(o));
  }
  return *this;
}

// A moved-from producer holds no claim; handle_ then frees the registry entry. An inherited
// copy in a forked child leaves the claimer's claim (and entry) alone.
MpmcProducer::~MpmcProducer() {
  if (!handle_.foreign()) abort();
}

Expected<std::span<std::byte>> MpmcProducer::TryClaimOnce(size_t n) noexcept {
  MpmcControl* c = view().control;
  // SYNC(targeted-wake): seq_cst load; the stamp decides what the position holds.
  uint64_t pos = c->enqueue_pos.load(std::memory_order_seq_cst);
  for (uint32_t iter = 0; iter < kMaxIterations; ++iter) {
    MpmcSlotHeader* s = view().slot(pos);
    const uint64_t want = pos & kStampPosMask;
    // SYNC(slot-free): seq_cst load (acquire side).
    uint64_t st = s->stamp.load(std::memory_order_seq_cst);
    const uint64_t spos = StampPos(st);
    if (spos == want && StampState(st) == kSlotFree) {
      // SYNC(claim): seq_cst CAS; the winner owns position `pos`.
      if (s->stamp.compare_exchange_strong(st, MakeStamp(pos, handle_.index(), kSlotClaimed),
                                           std::memory_order_seq_cst)) {
        HelpForward(c->enqueue_pos, pos);
        if (handle_.revoked()) [[unlikely]] {  // SYNC(revoke): after the claim CAS
          GiveUpRevokedClaim(pos);
          return RingErrc::kRevoked;
        }
        claim_pos_ = pos;
        claim_size_ = n;
        claimed_ = true;
        return std::span<std::byte>(view().payload(pos), n);
      }
      continue;  // lost the race for this position; look again
    }
    if (spos >= want) {  // position already taken by someone: move the hint past it
      pos = HelpForward(c->enqueue_pos, pos);
      continue;
    }
    return RingErrc::kWouldBlock;  // the previous lap's message still occupies the slot
  }
  return RingErrc::kCorrupt;
}

// Our entry was recovered while we ran (mpmc_layout.h rule 1): the claim at `pos` that we
// just made is not ours to keep. It becomes a skip record (unless the recoverer already
// made it one) and the handle is unusable from now on.
void MpmcProducer::GiveUpRevokedClaim(uint64_t pos) noexcept {
  handle_.MarkRevoked();
  MpmcSlotHeader* s = view().slot(pos);
  uint64_t expected = MakeStamp(pos, handle_.index(), kSlotClaimed);
  // SYNC(publish): seq_cst CAS; a skip record carries no payload.
  if (s->stamp.compare_exchange_strong(expected, MakeStamp(pos, kPublishedSkip, kSlotPublished),
                                       std::memory_order_seq_cst)) {
    view().control->abandoned.fetch_add(1, std::memory_order_relaxed);  // relaxed: statistic
    view().control->not_empty.NotifyAll();
  }
  LogEvent(LogLevel::kInfo, "revoked", handle_.segment_name(),
           "producer claim given up: this handle's entry was recovered");
}

Expected<std::span<std::byte>> MpmcProducer::try_claim(size_t n) noexcept {
  if (!handle_.usable()) [[unlikely]]
    return handle_.Unusable();
  if (claimed_) return RingErrc::kBadState;
  if (n > view().max_message_size) return RingErrc::kTooLarge;
  auto r = TryClaimOnce(n);
  if (r || !internal::WouldBlock(r.error())) return r;
  // Full: maybe a dead consumer holds the slot we need; its message must be orphaned so a
  // live consumer can redeliver and free it.
  if (RecoverIfDue(handle_)) return TryClaimOnce(n);
  return r;
}

Expected<std::span<std::byte>> MpmcProducer::claim(size_t n, const WaitOptions& opts) {
  if (!handle_.usable()) [[unlikely]]
    return handle_.Unusable();  // before touching view()
  auto r = try_claim(n);
  if (r || !internal::WouldBlock(r.error())) return r;
  // Full: wait for a batch of free slots (hysteresis), not for the first one. A producer
  // that refills each slot the moment a consumer frees it ping-pongs one cache line per
  // message between the two; one that waits for half the queue refills lines consumers
  // are done with while they drain the rest.
  const uint64_t batch = HysteresisSlots(view().slot_count);
  MpmcControl* c = view().control;
  MpmcSleeper sleeper{c->not_full, handle_.index()};
  return internal::BlockingWait(
      [&]() -> Expected<std::span<std::byte>> {
        // SYNC(targeted-wake): seq_cst loads; this producer waits for the slot of position
        // w = e + batch, freed by the release of w - N, which notifies (NotifyProducersFor).
        const uint64_t e = c->enqueue_pos.load(std::memory_order_seq_cst);
        const uint64_t w = e + batch;
        const uint64_t st = view().slot(w)->stamp.load(std::memory_order_seq_cst);
        const uint64_t dq = c->dequeue_pos.load(std::memory_order_seq_cst);
        // Slot of w freed, or (fallback, no wake-up guaranteed: liveness_check bounds it)
        // the queue drained below the mark although a consumer holds an old slot.
        if (StampPos(st) < (w & kStampPosMask) && e > dq + batch) {
          if (RecoverIfDue(handle_)) return try_claim(n);
          return RingErrc::kWouldBlock;
        }
        return try_claim(n);
      },
      sleeper, opts, &stats());
}

Expected<void> MpmcProducer::publish() noexcept {
  if (!claimed_) return RingErrc::kBadState;
  return publish(claim_size_);
}

Expected<void> MpmcProducer::publish(size_t n) noexcept { return PublishWithFlags(n, 0); }

Expected<void> MpmcProducer::publish_redelivered(size_t n) noexcept {
  return PublishWithFlags(n, kMpmcSlotFlagRedelivered);
}

Expected<void> MpmcProducer::PublishWithFlags(size_t n, uint32_t flags) noexcept {
  if (!claimed_ || n > claim_size_) return RingErrc::kBadState;
  MpmcSlotHeader* s = view().slot(claim_pos_);
  uint64_t expected = MakeStamp(claim_pos_, handle_.index(), kSlotClaimed);
  claimed_ = false;
  // Relaxed: only a check that the slot is still ours before we write its header (a claim
  // taken away by recovery may already be reused by another producer); the CAS below
  // decides. The line is in our cache since the claim: no extra miss.
  if (s->stamp.load(std::memory_order_relaxed) != expected) [[unlikely]] {
    handle_.MarkRevoked();
    LogEvent(LogLevel::kInfo, "revoked", handle_.segment_name(),
             "publish: the claim was taken away (this process was judged dead)");
    return RingErrc::kRevoked;
  }
  s->length = static_cast<uint32_t>(n);
  s->flags = flags;  // plain: published with the length by the CAS below
  // SYNC(publish): seq_cst CAS (release side). A CAS, not a store: if our claim was taken
  // away (we were judged dead), we must not overwrite the recoverer's stamp.
  if (!s->stamp.compare_exchange_strong(expected,
                                        MakeStamp(claim_pos_, kPublishedData, kSlotPublished),
                                        std::memory_order_seq_cst)) {
    handle_.MarkRevoked();
    LogEvent(LogLevel::kInfo, "revoked", handle_.segment_name(),
             "publish: the claim was taken away (this process was judged dead)");
    return RingErrc::kRevoked;
  }
  // Counters: relaxed stores of our running totals on our own stats block (role_stats.h).
  RoleStats& st = stats();
  st.messages.store(++total_msgs_, std::memory_order_relaxed);
  st.bytes.store(total_bytes_ += n, std::memory_order_relaxed);
  NotifyConsumersFor(view().control, claim_pos_, st);
  return {};
}

void MpmcProducer::abort() noexcept {
  if (!claimed_) return;
  claimed_ = false;
  MpmcSlotHeader* s = view().slot(claim_pos_);
  uint64_t expected = MakeStamp(claim_pos_, handle_.index(), kSlotClaimed);
  // SYNC(publish): seq_cst CAS; a skip record carries no payload.
  if (s->stamp.compare_exchange_strong(expected,
                                       MakeStamp(claim_pos_, kPublishedSkip, kSlotPublished),
                                       std::memory_order_seq_cst)) {
    // Relaxed: a statistic; nothing is ordered by it.
    view().control->abandoned.fetch_add(1, std::memory_order_relaxed);
    NotifyConsumersFor(view().control, claim_pos_, stats());
  }
}

Expected<void> MpmcProducer::try_push(std::span<const std::byte> msg) noexcept {
  auto span = try_claim(msg.size());
  if (!span) return MakeUnexpected(span.error());
  if (!msg.empty()) std::memcpy(span->data(), msg.data(), msg.size());
  return publish();
}

Expected<void> MpmcProducer::push(std::span<const std::byte> msg, const WaitOptions& opts) {
  auto span = claim(msg.size(), opts);
  if (!span) return MakeUnexpected(span.error());
  if (!msg.empty()) std::memcpy(span->data(), msg.data(), msg.size());
  return publish();
}

// ---------------------------------------------------------------- MpmcConsumer

MpmcConsumer::MpmcConsumer(MpmcConsumer&& o) noexcept
    : handle_(std::move(o.handle_)),
      total_msgs_(o.total_msgs_),
      total_bytes_(o.total_bytes_),
      claim_pos_(o.claim_pos_),
      claim_len_(o.claim_len_),
      claimed_(std::exchange(o.claimed_, false)),
      redelivered_(o.redelivered_) {}

MpmcConsumer& MpmcConsumer::operator=(MpmcConsumer&& o) noexcept {
  if (this != &o) {
    this->~MpmcConsumer();
    new (this) MpmcConsumer(std::move(o));
  }
  return *this;
}

// A moved-from consumer holds no claim; handle_ then frees the registry entry.
MpmcConsumer::~MpmcConsumer() {
  // An inherited copy in a forked child: the held message is the claimer's.
  if (claimed_ && !handle_.foreign()) (void)release();
}

MpmcConsumer::Message MpmcConsumer::Held() const noexcept {
  return Message{std::span<const std::byte>(view().payload(claim_pos_), claim_len_), redelivered_};
}

Expected<MpmcConsumer::Message> MpmcConsumer::Hold(const MpmcSlotHeader& s, uint64_t pos,
                                                   bool redelivered) noexcept {
  const uint32_t len = s.length;
  claim_pos_ = pos;
  claimed_ = true;
  redelivered_ = redelivered || (s.flags & kMpmcSlotFlagRedelivered) != 0;
  if (len > view().max_message_size) {
    claim_len_ = 0;
    (void)release();
    return RingErrc::kCorrupt;
  }
  claim_len_ = len;
  return Held();
}

Expected<MpmcConsumer::Message> MpmcConsumer::TryClaimOnce() noexcept {
  MpmcControl* c = view().control;
  // SYNC(targeted-wake): seq_cst load; the stamp decides what the position holds.
  uint64_t pos = c->dequeue_pos.load(std::memory_order_seq_cst);
  for (uint32_t iter = 0; iter < kMaxIterations; ++iter) {
    MpmcSlotHeader* s = view().slot(pos);
    const uint64_t want = pos & kStampPosMask;
    // SYNC(publish): seq_cst load (acquire side).
    uint64_t st = s->stamp.load(std::memory_order_seq_cst);
    const uint64_t spos = StampPos(st);
    if (spos > want || (spos == want && StampState(st) == kSlotReading)) {
      pos = HelpForward(c->dequeue_pos, pos);  // already taken by another consumer
      continue;
    }
    if (spos != want || StampState(st) != kSlotPublished) {
      return RingErrc::kWouldBlock;  // not yet claimed, or claimed but not yet published
    }
    if (StampIdx(st) == kPublishedSkip) {
      // SYNC(slot-free): seq_cst CAS; a skip record is consumed in one step.
      if (s->stamp.compare_exchange_strong(st, MakeStamp(pos + view().slot_count, 0, kSlotFree),
                                           std::memory_order_seq_cst)) {
        NotifyProducersFor(c, view().slot_count, pos + view().slot_count, stats());
        pos = HelpForward(c->dequeue_pos, pos);
      }
      continue;
    }
    // SYNC(claim) + SYNC(publish): seq_cst CAS, acquire side of the producer's publication.
    if (!s->stamp.compare_exchange_strong(st, MakeStamp(pos, handle_.index(), kSlotReading),
                                          std::memory_order_seq_cst)) {
      continue;
    }
    HelpForward(c->dequeue_pos, pos);
    if (handle_.revoked()) [[unlikely]] {  // SYNC(revoke): after the claim CAS
      GiveUpRevokedClaim(pos);
      return RingErrc::kRevoked;
    }
    return Hold(*s, pos, /*redelivered=*/false);
  }
  return RingErrc::kCorrupt;
}

Expected<MpmcConsumer::Message> MpmcConsumer::TryAdoptOrphan() noexcept {
  MpmcControl* c = view().control;
  for (uint64_t i = 0; i < view().slot_count; ++i) {
    MpmcSlotHeader* s = SlotByIndex(view(), i);
    uint64_t st = s->stamp.load(std::memory_order_seq_cst);  // SYNC(claim)
    if (StampState(st) != kSlotReading || StampIdx(st) != kMpmcOrphanIdx) continue;
    const uint64_t pos = StampPos(st);
    // SYNC(claim): seq_cst CAS; the payload was published before the dead consumer's
    // claim, which happens-before this CAS via the recoverer's CAS on the same stamp.
    if (!s->stamp.compare_exchange_strong(st, MakeStamp(pos, handle_.index(), kSlotReading),
                                          std::memory_order_seq_cst)) {
      continue;
    }
    // seq_cst: part of the state a sleeping consumer re-checks (event_count.h).
    c->orphans.fetch_sub(1, std::memory_order_seq_cst);
    if (handle_.revoked()) [[unlikely]] {  // SYNC(revoke): after the claim CAS
      GiveUpRevokedClaim(pos);
      return RingErrc::kRevoked;
    }
    c->redelivered.fetch_add(1, std::memory_order_relaxed);  // relaxed: statistic
    return Hold(*s, pos, /*redelivered=*/true);
  }
  return RingErrc::kWouldBlock;
}

Expected<MpmcConsumer::Message> MpmcConsumer::TryClaimSlow() noexcept {
  const bool recovered = RecoverIfDue(handle_);
  // seq_cst: part of the state a sleeper re-checks (event_count.h); recovery notifies.
  if (view().control->orphans.load(std::memory_order_seq_cst) > 0) {
    auto r = TryAdoptOrphan();
    if (r || !internal::WouldBlock(r.error())) return r;
  }
  if (recovered) return TryClaimOnce();
  return RingErrc::kWouldBlock;
}

// Our entry was recovered while we ran (mpmc_layout.h rule 1): the message at `pos` that we
// just claimed goes back to the other consumers as an orphan (unless the recoverer already
// orphaned it), flagged redelivered; the handle is unusable from now on.
void MpmcConsumer::GiveUpRevokedClaim(uint64_t pos) noexcept {
  handle_.MarkRevoked();
  MpmcControl* c = view().control;
  MpmcSlotHeader* s = view().slot(pos);
  uint64_t expected = MakeStamp(pos, handle_.index(), kSlotReading);
  // Count first (as TakeAwayClaims); seq_cst: re-checked by sleepers.
  c->orphans.fetch_add(1, std::memory_order_seq_cst);
  // SYNC(claim): seq_cst CAS.
  if (!s->stamp.compare_exchange_strong(expected, MakeStamp(pos, kMpmcOrphanIdx, kSlotReading),
                                        std::memory_order_seq_cst)) {
    c->orphans.fetch_sub(1, std::memory_order_seq_cst);  // seq_cst: as the increment
  }
  c->not_empty.NotifyAll();
  LogEvent(LogLevel::kInfo, "revoked", handle_.segment_name(),
           "consumer claim given up: this handle's entry was recovered");
}

Expected<MpmcConsumer::Message> MpmcConsumer::try_claim() noexcept {
  if (!handle_.usable()) [[unlikely]]
    return handle_.Unusable();
  if (claimed_) return RingErrc::kBadState;
  auto r = TryClaimOnce();
  if (r || !internal::WouldBlock(r.error())) return r;
  return TryClaimSlow();
}

Expected<MpmcConsumer::Message> MpmcConsumer::claim(const WaitOptions& opts) {
  if (!handle_.usable()) [[unlikely]]
    return handle_.Unusable();  // before touching view()
  MpmcSleeper sleeper{view().control->not_empty, handle_.index()};
  return internal::BlockingWait([&] { return try_claim(); }, sleeper, opts, &stats());
}

Expected<void> MpmcConsumer::release() noexcept {
  if (!claimed_) return RingErrc::kBadState;
  claimed_ = false;
  MpmcSlotHeader* s = view().slot(claim_pos_);
  uint64_t expected = MakeStamp(claim_pos_, handle_.index(), kSlotReading);
  // SYNC(slot-free): seq_cst CAS (release side). A CAS so that a claim taken away from a
  // process judged dead is not freed twice.
  if (!s->stamp.compare_exchange_strong(expected,
                                        MakeStamp(claim_pos_ + view().slot_count, 0, kSlotFree),
                                        std::memory_order_seq_cst)) {
    // Taken away: the stamp can never again be `expected` (mpmc_layout.h rule 2), so no
    // later release of ours could free somebody else's message either.
    handle_.MarkRevoked();
    LogEvent(LogLevel::kInfo, "revoked", handle_.segment_name(),
             "release: the claim was taken away (this process was judged dead)");
    return RingErrc::kRevoked;
  }
  RoleStats& st = stats();  // counters: as in publish()
  st.messages.store(++total_msgs_, std::memory_order_relaxed);
  st.bytes.store(total_bytes_ += claim_len_, std::memory_order_relaxed);
  NotifyProducersFor(view().control, view().slot_count, claim_pos_ + view().slot_count, st);
  return {};
}

Expected<MpmcConsumer::Popped> MpmcConsumer::CopyOut(std::span<std::byte> buf) noexcept {
  if (buf.size() < claim_len_) return RingErrc::kTooLarge;  // keep the claim
  if (claim_len_ > 0) std::memcpy(buf.data(), view().payload(claim_pos_), claim_len_);
  Popped p{claim_len_, redelivered_};
  auto ok = release();
  if (!ok) return MakeUnexpected(ok.error());
  return p;
}

Expected<MpmcConsumer::Popped> MpmcConsumer::try_pop(std::span<std::byte> buf) noexcept {
  if (!claimed_) {
    auto m = try_claim();
    if (!m) return MakeUnexpected(m.error());
  }
  return CopyOut(buf);
}

Expected<MpmcConsumer::Popped> MpmcConsumer::pop(std::span<std::byte> buf,
                                                 const WaitOptions& opts) {
  if (!claimed_) {
    auto m = claim(opts);
    if (!m) return MakeUnexpected(m.error());
  }
  return CopyOut(buf);
}

// ---------------------------------------------------------------- MpmcQueue

namespace {

// Stale: no live process holds any registry entry nor the creator slot, as the kernel says
// (ProbeAnyHolder: one fcntl for all entries; no /proc, no fd opened). Unknown: not stale.
bool IsStaleMpmcSegment(const Segment& seg) {
  auto g = ValidateMpmcSegment(seg);
  if (!g) return false;  // not ours to judge: leave foreign or corrupt files alone
  return ProbeAnyHolder(seg, 0, kMpmcMaxHandles) == HolderState::kDead &&
         ProbeHolder(seg, kCreatorHolderSlot) == HolderState::kDead;
}

// Decided on one open file; unlinked only if the name still refers to it.
bool RemoveIfStale(std::string_view name) {
  auto seg = Segment::Open(name);
  // Gone since our create failed (another cleaner removed it): the name may be free now.
  if (!seg) return seg.error() == std::errc::no_such_file_or_directory;
  if (!IsStaleMpmcSegment(*seg)) return false;
  auto removed = UnlinkShmIfSame(name, seg->fd());
  if (removed && *removed) {
    LogEvent(LogLevel::kInfo, "stale-removed", name, "creator and handles are dead");
  }
  // Removed by us, or by another cleaner meanwhile: worth creating again either way (if
  // the name now names a new segment, the create fails with EEXIST, as it should).
  return true;
}

}  // namespace

MpmcQueue::MpmcQueue(std::shared_ptr<Segment> seg, MpmcGeometry g,
                     std::shared_ptr<HolderLock> creator_lock)
    : segment_(std::move(seg)),
      creator_lock_(std::move(creator_lock)),
      geometry_(g),
      view_(MpmcViewOf(*segment_, g)) {}

MpmcQueue::MpmcQueue(MpmcQueue&& o) noexcept
    : segment_(std::move(o.segment_)),
      creator_lock_(std::move(o.creator_lock_)),
      geometry_(std::exchange(o.geometry_, MpmcGeometry{})),
      view_(std::exchange(o.view_, MpmcView{})),
      recovery_interval_(o.recovery_interval_) {}

MpmcQueue& MpmcQueue::operator=(MpmcQueue&& o) noexcept {
  if (this != &o) {
    segment_ = std::move(o.segment_);
    creator_lock_ = std::move(o.creator_lock_);
    geometry_ = std::exchange(o.geometry_, MpmcGeometry{});
    view_ = std::exchange(o.view_, MpmcView{});
    recovery_interval_ = o.recovery_interval_;
  }
  return *this;
}

const Segment& MpmcQueue::segment() const noexcept {
  static const Segment kNone;
  return segment_ ? *segment_ : kNone;
}

Expected<MpmcQueue> MpmcQueue::Create(std::string_view name, uint64_t slot_count,
                                      uint64_t max_message_size, const CreateOptions& options) {
  auto size = MpmcSegmentSize(slot_count, max_message_size);
  if (!size) return MakeUnexpected(size.error());
  auto seg = Segment::Create(name, *size, options.unlink, options.mode);
  if (!seg && options.reclaim_stale && seg.error() == std::errc::file_exists &&
      RemoveIfStale(name)) {
    seg = Segment::Create(name, *size, options.unlink, options.mode);
  }
  if (!seg) return MakeUnexpected(seg.error());
  // The creator slot, before the header is published: nobody can judge the new queue stale
  // once it is visible. Out of fds: fail (the Segment's destructor unlinks the name).
  auto creator = HolderLock::Acquire(*seg, kCreatorHolderSlot);
  if (!creator) return MakeUnexpected(creator.error());
  InitMpmcSegment(*seg, slot_count, max_message_size);
  LogEvent(LogLevel::kInfo, "create", name, "mpmc-queue, %llu slots of %llu B",
           static_cast<unsigned long long>(slot_count),
           static_cast<unsigned long long>(max_message_size));
  auto shared = std::make_shared<Segment>(std::move(*seg));
  auto g = ValidateMpmcSegment(*shared);
  if (!g) return MakeUnexpected(g.error());
  return MpmcQueue(std::move(shared), *g, std::make_shared<HolderLock>(std::move(*creator)));
}

Expected<MpmcQueue> MpmcQueue::Attach(std::string_view name) {
  auto seg = Segment::Open(name);
  if (!seg) return MakeUnexpected(seg.error());
  auto g = ValidateMpmcSegment(*seg);
  if (!g) {
    if (g.error() != RingErrc::kNotReady) {
      LogEvent(LogLevel::kInfo, "corruption", name, "attach refused: %s",
               g.error().message().c_str());
    }
    return MakeUnexpected(g.error());
  }
  LogEvent(LogLevel::kInfo, "attach", name, "mpmc-queue, %llu slots",
           static_cast<unsigned long long>(g->slot_count));
  return MpmcQueue(std::make_shared<Segment>(std::move(*seg)), *g, nullptr);
}

Expected<MpmcQueue> MpmcQueue::CreateAnonymous(uint64_t slot_count, uint64_t max_message_size) {
  auto size = MpmcSegmentSize(slot_count, max_message_size);
  if (!size) return MakeUnexpected(size.error());
  auto seg = Segment::CreateAnonymous(*size);
  if (!seg) return MakeUnexpected(seg.error());
  auto creator = HolderLock::Acquire(*seg, kCreatorHolderSlot);  // as Create
  if (!creator) return MakeUnexpected(creator.error());
  InitMpmcSegment(*seg, slot_count, max_message_size);
  auto q = Adopt(std::move(*seg));
  if (q) q->creator_lock_ = std::make_shared<HolderLock>(std::move(*creator));
  return q;
}

Expected<MpmcQueue> MpmcQueue::Adopt(Segment segment) {
  auto g = ValidateMpmcSegment(segment);
  if (!g) return MakeUnexpected(g.error());
  return MpmcQueue(std::make_shared<Segment>(std::move(segment)), *g, nullptr);
}

Expected<internal::MpmcHandle> MpmcQueue::Register(uint32_t role) const {
  if (!segment_) return RingErrc::kBadState;  // moved from
  // The owner word only names us (for tools, and "registered" vs "left"); liveness is the
  // entry's HolderLock, so a /proc we cannot read does not keep us from registering.
  const uint64_t me = SelfIdentityOrPidOnly();
  // Free entries first; if there is none, recover every entry whose holder the kernel says
  // died without leaving, and look again.
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1 && internal::RecoverMpmcDead(*segment_, view_) == 0) break;
    for (uint32_t i = 0; i < kMpmcMaxHandles; ++i) {
      MpmcRegistryEntry& e = view_.registry[i];
      // seq_cst: slow path; a hint, re-read under the entry's lock.
      if (e.owner.load(std::memory_order_seq_cst) != 0) continue;
      if (Quarantined(view_, i)) continue;  // cheap check before opening an fd
      auto lock = HolderLock::Acquire(*segment_, i);
      if (!lock) {
        if (lock.error() == RingErrc::kRoleTaken) continue;  // registering or held
        return MakeUnexpected(lock.error());                 // e.g. EMFILE: say so
      }
      // We hold slot i: nobody else registers on or recovers entry i until we let go. An
      // owner word set since our look names a holder that did not leave and holds no lock
      // (we do): it died in between.
      if (RecoverLockedEntry(view_, i)) {
        view_.control->not_empty.NotifyAll();
        view_.control->not_full.NotifyAll();
      }
      // Strays of a revoked earlier holder (mpmc_layout.h rule 2): none may name us.
      if (e.ever_recovered.load(std::memory_order_relaxed) != 0) TakeAwayClaims(view_, i);
      if (Quarantined(view_, i)) continue;  // (the recovery may have quarantined it)
      // SYNC(revoke): seq_cst RMW; our tenure's generation (mpmc_layout.h rule 1).
      const uint64_t gen = e.generation.fetch_add(1, std::memory_order_seq_cst) + 1;
      e.role.store(role, std::memory_order_relaxed);  // relaxed: informational (stats)
      // SYNC(owner): seq_cst; written after the lock was taken (mpmc_layout.h LIVENESS).
      e.owner.store(me, std::memory_order_seq_cst);
      return internal::MpmcHandle(segment_, view_, i, std::move(*lock), me, gen,
                                  recovery_interval_);
    }
  }
  return RingErrc::kRoleTaken;
}

Expected<MpmcProducer> MpmcQueue::Producer() const {
  auto h = Register(kRoleProducer);
  if (!h) return MakeUnexpected(h.error());
  return MpmcProducer(std::move(*h));
}

Expected<MpmcConsumer> MpmcQueue::Consumer() const {
  auto h = Register(kRoleConsumer);
  if (!h) return MakeUnexpected(h.error());
  return MpmcConsumer(std::move(*h));
}

size_t MpmcQueue::RecoverDead() const noexcept {
  if (!segment_) return 0;
  return internal::RecoverMpmcDead(*segment_, view_);
}

MpmcStats MpmcQueue::stats() const noexcept {
  const MpmcControl* c = view_.control;
  MpmcStats st;
  if (c == nullptr) return st;  // moved from
  // Relaxed/seq_cst mix is fine for a snapshot; each counter is corrected by its stamp.
  uint64_t e = c->enqueue_pos.load(std::memory_order_seq_cst);
  uint64_t stamp = view_.slot(e)->stamp.load(std::memory_order_seq_cst);
  if (StampPos(stamp) > (e & kStampPosMask) ||
      (StampPos(stamp) == (e & kStampPosMask) && StampState(stamp) != kSlotFree)) {
    ++e;  // the hint lags one claim behind
  }
  uint64_t d = c->dequeue_pos.load(std::memory_order_seq_cst);
  stamp = view_.slot(d)->stamp.load(std::memory_order_seq_cst);
  if (StampPos(stamp) > (d & kStampPosMask) ||
      (StampPos(stamp) == (d & kStampPosMask) && StampState(stamp) == kSlotReading)) {
    ++d;
  }
  st.abandoned = c->abandoned.load(std::memory_order_relaxed);
  st.redelivered = c->redelivered.load(std::memory_order_relaxed);
  const int64_t orphans = c->orphans.load(std::memory_order_relaxed);
  st.orphans = orphans > 0 ? static_cast<uint64_t>(orphans) : 0;
  st.pushes = e >= st.abandoned ? e - st.abandoned : 0;
  st.pops = d >= st.abandoned ? d - st.abandoned : 0;
  if (st.pops > st.pushes) st.pops = st.pushes;
  st.size = e >= d ? e - d : 0;
  st.capacity = view_.slot_count;
  for (uint32_t i = 0; i < kMpmcMaxHandles; ++i) {
    if (view_.registry[i].owner.load(std::memory_order_relaxed) == 0) continue;
    const uint32_t role = view_.registry[i].role.load(std::memory_order_relaxed);
    if (role == kRoleProducer) ++st.producers;
    if (role == kRoleConsumer) ++st.consumers;
  }
  return st;
}

Expected<void> MpmcQueue::Unlink() const {
  if (!segment_) return RingErrc::kBadState;
  return segment_->Unlink();
}

}  // namespace shmlink
