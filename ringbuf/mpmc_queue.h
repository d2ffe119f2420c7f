// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// MpmcQueue: a bounded multi-producer/multi-consumer queue of variable-length messages in
// POSIX shared memory, shared by any number of unrelated processes that meet by name.
//
//   auto q = MpmcQueue::Create("/jobs", 1024, 256);    // 1024 slots of up to 256 B
//   auto q = MpmcQueue::Attach("/jobs");               // any other process
//   auto tx = q->Producer();   tx->push(bytes);        // or try_claim/publish (zero copy)
//   auto rx = q->Consumer();   auto m = rx->pop(buf);  // or claim/release (zero copy)
//
// Algorithm: Vyukov's bounded MPMC queue with per-slot sequence stamps (mpmc_layout.h).
// The fast path is lock-free and makes no system call: a claim is one CAS on the slot's
// stamp (plus a CAS that advances the shared position). Blocking calls spin, then sleep on
// a futex EventCount in the segment (no CPU while idle, apart from a wake-up every
// WaitOptions::liveness_check to look for dead participants); see wait_options.h. A
// publish/release makes a wake-up call only if a sleeper may be waiting for exactly that
// position, and one call per sleep at most.
//
// Throughput tip: consumers that can afford a wake-up latency should wait with
// WaitOptions::Sleep(): a consumer that sleeps as soon as the queue is empty lets producers
// run ahead and then drains a batch, instead of handing over one cache line per message in
// lock-step (smoke run, 1->1, 64 B: ~12 vs ~4 M msgs/s; see docs/mpmc.md).
//
// Order: messages of one producer handle are claimed by consumers in the order they were
// published (per-producer FIFO); no order across producers. A redelivered message (below)
// comes out of that order and is flagged.
//
// CRASH SEMANTICS (processes killed at any instruction, e.g. SIGKILL):
//  * Every claim writes the claimant's registry index into the slot stamp in the same CAS
//    that claims it, and every handle holds its registry entry through an OFD lock the
//    kernel drops when the holder dies, exec's or closes the lock's fd (holder_lock.h,
//    mpmc_layout.h LIVENESS). A dead owner is recognised on the kernel's word - in any PID
//    namespace, with /proc hidden or unreadable, with a zombie thread-group leader - once the
//    kernel has closed its files (then it runs no user code any more); never before, and
//    never on a failed probe (unknown is not dead).
//  * Dead participants are detected by the survivors' slow paths: a consumer that finds the
//    queue empty and a producer that finds it full probe every registered entry (one fcntl
//    each, no /proc, no fd) at most once per `recovery_interval` (default 10 ms; blocking
//    waits wake at least every WaitOptions::liveness_check to do it). RecoverDead() does it
//    at once. Recovering an entry takes its lock, i.e. one fd while it works: a process out
//    of fds recovers nothing until it has one.
//  * A LIVE handle whose lock fd was closed behind its back (a program closing all fds) is
//    judged dead and recovered like a dead one; it then gets RingErrc::kRevoked from
//    claim/publish/release and can never complete one under another handle's name
//    (mpmc_layout.h: generations and quarantine). A message it held is redelivered.
//  * A stopped (SIGSTOP) producer between claim and publish holds back every consumer
//    behind its slot for as long as it stays stopped: it is alive and nothing acts on it
//    (`shmlink inspect` shows the claim and its holder's state). Same for a stopped
//    consumer holding the message in the slot that producers need next.
//  * Producer died between claim and publish: its slot becomes a skip record, which
//    consumers step over. Counted in stats().abandoned. The message is lost (it was never
//    committed); nothing else is. A consumer blocked behind that slot proceeds within about
//    recovery_interval + liveness_check.
//  * Consumer died holding a claimed message (claim()/pop() in progress): the message is
//    REDELIVERED to another consumer (at-least-once), flagged `redelivered`, and counted in
//    stats().redelivered. It may therefore be processed twice if the dead consumer had
//    already acted on it; a consumer's completed release()/pop() is never undone.
//  * Otherwise no committed message is lost or duplicated.
//  * Messages that are queued survive the death of every producer; the queue survives the
//    death of the creator while other processes keep it mapped (see CreateOptions::unlink).
//  * A process that dies while itself recovering another dead process may leave the
//    abandoned/redelivered counters off by one (slots are still recovered correctly).
//
// Limits: slot_count is a power of two in [2, 2^24]; max_message_size in [1, 256 MiB];
// 255 live handles at a time (registry size); messages may be empty.
//
// Errors (RingErrc): kWouldBlock (try_: full/empty), kTimedOut, kTooLarge, kBadState (call
// out of order, e.g. publish() without claim; any call on a moved-from queue or handle),
// kRoleTaken (255 live handles), kRevoked (this handle was judged dead and recovered; see
// below), kCorrupt (stamps inconsistent: the segment was damaged; never read or written out
// of bounds).
//
// Thread safety: MpmcQueue is any-thread. A handle (MpmcProducer/MpmcConsumer) is used by
// one thread at a time; create one handle per thread. Handles are bound to the process
// that created them (do not use them across fork()): a forked child that destroys an
// inherited handle releases nothing - the claimer keeps its registry entry, its claim and
// the message it holds.
#ifndef SHMLINK_RINGBUF_MPMC_QUEUE_H_
#define SHMLINK_RINGBUF_MPMC_QUEUE_H_

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <utility>

#include <shmlink/expected.h>
#include <shmlink/holder_lock.h>
#include <shmlink/mpmc_handle.h>
#include <shmlink/mpmc_layout.h>
#include <shmlink/ring_error.h>
#include <shmlink/segment.h>
#include <shmlink/wait_options.h>

namespace shmlink {

// Counters of one queue, readable from any attached process. snapshot (may be stale).
struct MpmcStats {
  uint64_t pushes = 0;       // claims by producers minus abandoned ones (includes claims
                             // being written at this moment)
  uint64_t pops = 0;         // messages claimed by consumers (includes ones being read);
                             // exact once abandoned slots in the queue were stepped over
  uint64_t abandoned = 0;    // claims never published: aborted, or the producer died
  uint64_t redelivered = 0;  // messages delivered again because their consumer died
  uint64_t orphans = 0;      // messages of dead consumers waiting for redelivery
  uint64_t size = 0;         // current fill: positions claimed by producers, not consumers
  uint64_t capacity = 0;     // slot count
  uint32_t producers = 0;    // registered producer handles (live or not yet recovered)
  uint32_t consumers = 0;    // registered consumer handles
};

class MpmcQueue;

// Write side. producer-only (one thread at a time).
class MpmcProducer {
 public:
  MpmcProducer(MpmcProducer&& other) noexcept;
  MpmcProducer& operator=(MpmcProducer&& other) noexcept;
  MpmcProducer(const MpmcProducer&) = delete;
  MpmcProducer& operator=(const MpmcProducer&) = delete;
  // Aborts a pending claim (skip record) and frees the registry entry (neither in another
  // process than the claimer's: see the file comment on fork()).
  ~MpmcProducer();

  uint64_t max_message_size() const noexcept { return view().max_message_size; }

  // Claims a slot for one message of `n` bytes and returns its payload span, valid until
  // publish() or abort(). At most one claim per handle. Errors: kTooLarge, kBadState (a
  // claim is pending), kWouldBlock (full), kRevoked, kCorrupt.
  [[nodiscard]] Expected<std::span<std::byte>> try_claim(size_t n) noexcept;
  // As try_claim, waiting for space per `opts`. When the queue is full it waits until
  // about half of it is free again (hysteresis: refills then touch lines the consumers are
  // done with instead of racing them slot by slot), or at most opts.liveness_check if a
  // consumer holds an old slot while the rest drained. Extra error: kTimedOut.
  [[nodiscard]] Expected<std::span<std::byte>> claim(size_t n, const WaitOptions& opts = {});
  // Commits the claimed slot (its first `n` bytes if given, n <= claimed size) and wakes a
  // sleeping consumer. Errors: kBadState (no claim, or n too big), kRevoked (the claim was
  // taken away: this handle was judged dead, its token fd closed behind its back).
  [[nodiscard]] Expected<void> publish() noexcept;
  [[nodiscard]] Expected<void> publish(size_t n) noexcept;
  // As publish(n), but consumers get the message flagged `redelivered`: for relays (such
  // as the cross-host bridge) passing on a message that may have been delivered before.
  [[nodiscard]] Expected<void> publish_redelivered(size_t n) noexcept;
  // Gives the claim up; consumers skip the slot (counted as abandoned). No-op without claim.
  void abort() noexcept;
  bool has_claim() const noexcept { return claimed_; }

  // Copying forms: claim + memcpy + publish.
  [[nodiscard]] Expected<void> try_push(std::span<const std::byte> msg) noexcept;
  [[nodiscard]] Expected<void> push(std::span<const std::byte> msg, const WaitOptions& opts = {});

  uint32_t registry_index() const noexcept { return handle_.index(); }

 private:
  friend class MpmcQueue;
  // Counters continue where earlier holders of the registry entry left them (relaxed:
  // statistics; the entry's owner CAS ordered us after them).
  explicit MpmcProducer(internal::MpmcHandle handle) noexcept
      : handle_(std::move(handle)),
        total_msgs_(stats().messages.load(std::memory_order_relaxed)),
        total_bytes_(stats().bytes.load(std::memory_order_relaxed)) {}
  const MpmcView& view() const noexcept { return handle_.view(); }
  // This handle's counters (single writer: us; role_stats.h).
  RoleStats& stats() const noexcept {
    return view().stats[handle_.index()].by_role[RoleStatsIndex(kRoleProducer)];
  }
  Expected<std::span<std::byte>> TryClaimOnce(size_t n) noexcept;
  void GiveUpRevokedClaim(uint64_t pos) noexcept;
  Expected<void> PublishWithFlags(size_t n, uint32_t flags) noexcept;

  internal::MpmcHandle handle_;  // frees the entry after ~MpmcProducer aborted the claim
  uint64_t total_msgs_ = 0;      // running totals mirrored to stats() (single writer)
  uint64_t total_bytes_ = 0;
  uint64_t claim_pos_ = 0;
  size_t claim_size_ = 0;
  bool claimed_ = false;
};

// Read side. consumer-only (one thread at a time).
class MpmcConsumer {
 public:
  struct Message {
    std::span<const std::byte> data;  // in place; valid until release()
    bool redelivered = false;         // its previous consumer died while holding it
  };
  struct Popped {
    size_t size = 0;
    bool redelivered = false;
  };

  MpmcConsumer(MpmcConsumer&& other) noexcept;
  MpmcConsumer& operator=(MpmcConsumer&& other) noexcept;
  MpmcConsumer(const MpmcConsumer&) = delete;
  MpmcConsumer& operator=(const MpmcConsumer&) = delete;
  // Releases a held message (it counts as consumed) and frees the registry entry (neither
  // in another process than the claimer's: see the file comment on fork()).
  ~MpmcConsumer();

  uint64_t max_message_size() const noexcept { return view().max_message_size; }

  // Claims the next message (or an orphaned one, flagged redelivered) and returns it in
  // place. At most one claim per handle. Errors: kBadState (a message is held),
  // kWouldBlock (empty), kCorrupt (a stamp or length is inconsistent; the slot is freed).
  [[nodiscard]] Expected<Message> try_claim() noexcept;
  // As try_claim, waiting per `opts`. Extra error: kTimedOut.
  [[nodiscard]] Expected<Message> claim(const WaitOptions& opts = {});
  // Frees the held message's slot and wakes a sleeping producer. Errors: kBadState (none
  // held), kRevoked (the claim was taken away: this handle was judged dead).
  [[nodiscard]] Expected<void> release() noexcept;
  bool has_claim() const noexcept { return claimed_; }

  // Copying forms: claim + memcpy + release. If `buf` is too small, fails with kTooLarge
  // and KEEPS the message claimed by this handle: call again with a larger buffer (or use
  // claim()/release()).
  [[nodiscard]] Expected<Popped> try_pop(std::span<std::byte> buf) noexcept;
  [[nodiscard]] Expected<Popped> pop(std::span<std::byte> buf, const WaitOptions& opts = {});

  uint32_t registry_index() const noexcept { return handle_.index(); }

 private:
  friend class MpmcQueue;
  explicit MpmcConsumer(internal::MpmcHandle handle) noexcept  // counters: as MpmcProducer
      : handle_(std::move(handle)),
        total_msgs_(stats().messages.load(std::memory_order_relaxed)),
        total_bytes_(stats().bytes.load(std::memory_order_relaxed)) {}
  const MpmcView& view() const noexcept { return handle_.view(); }
  RoleStats& stats() const noexcept {
    return view().stats[handle_.index()].by_role[RoleStatsIndex(kRoleConsumer)];
  }
  Expected<Message> TryClaimOnce() noexcept;
  void GiveUpRevokedClaim(uint64_t pos) noexcept;
  Expected<Message> TryAdoptOrphan() noexcept;
  Expected<Message> TryClaimSlow() noexcept;
  Expected<Popped> CopyOut(std::span<std::byte> buf) noexcept;
  Message Held() const noexcept;
  // Records this handle's claim of the message at `pos` (its stamp now Reading with our
  // index) and returns it; a length over the maximum frees the slot: kCorrupt.
  Expected<Message> Hold(const MpmcSlotHeader& s, uint64_t pos, bool redelivered) noexcept;

  internal::MpmcHandle handle_;  // frees the entry after ~MpmcConsumer released the claim
  uint64_t total_msgs_ = 0;      // running totals mirrored to stats() (single writer)
  uint64_t total_bytes_ = 0;
  uint64_t claim_pos_ = 0;
  uint32_t claim_len_ = 0;
  bool claimed_ = false;
  bool redelivered_ = false;
};

// Owner of a mapping of a named queue; hands out producer/consumer handles.
class MpmcQueue {
 public:
  struct CreateOptions {
    // kUnlinkOnDestroy: the name disappears when the creator's MpmcQueue is destroyed
    // (mapped handles keep working); kKeep: it stays until Unlink().
    UnlinkPolicy unlink = UnlinkPolicy::kUnlinkOnDestroy;
    mode_t mode = 0600;
    // If the name exists but its creator and every registered handle are dead, replace it.
    bool reclaim_stale = true;
  };

  // Creates queue `name` (exclusive) of `slot_count` slots (power of two) of up to
  // `max_message_size` bytes. Errors: those of Segment::Create, kInvalidArgument.
  [[nodiscard]] static Expected<MpmcQueue> Create(std::string_view name, uint64_t slot_count,
                                                  uint64_t max_message_size,
                                                  const CreateOptions& options);
  [[nodiscard]] static Expected<MpmcQueue> Create(std::string_view name, uint64_t slot_count,
                                                  uint64_t max_message_size) {
    return Create(name, slot_count, max_message_size, CreateOptions{});
  }
  // Attaches to an existing queue, validating header and geometry first. Errors: those of
  // Segment::Open, kWrongKind (another kind of segment), kBadGeometry, kBadMagic, ...
  [[nodiscard]] static Expected<MpmcQueue> Attach(std::string_view name);
  // Creates a queue in an anonymous sealed segment (memfd), to be passed by fd
  // (segment().fd(), SCM_RIGHTS) and adopted on the other side with Adopt(FromFd(fd)).
  [[nodiscard]] static Expected<MpmcQueue> CreateAnonymous(uint64_t slot_count,
                                                           uint64_t max_message_size);
  // Takes over an already-mapped segment (e.g. Segment::FromFd), validating it as Attach.
  [[nodiscard]] static Expected<MpmcQueue> Adopt(Segment segment);

  // New handles, each holding a registry entry through its HolderLock (one fd per handle,
  // O_CLOEXEC) and named by this process's identity. kRoleTaken if all kMpmcMaxHandles
  // entries are held by live processes (or quarantined, mpmc_layout.h); the errno of the
  // open (e.g. EMFILE) if the lock's fd cannot be opened; kBadState if moved from.
  // any-thread.
  [[nodiscard]] Expected<MpmcProducer> Producer() const;
  [[nodiscard]] Expected<MpmcConsumer> Consumer() const;

  // How often a handle's slow path checks other participants' liveness (new handles).
  void set_recovery_interval(std::chrono::nanoseconds d) noexcept { recovery_interval_ = d; }

  // Asks the kernel now about every registered handle and recovers those whose holder died
  // (abandon their claims, orphan their held messages for redelivery, free their entries),
  // and stray claims naming free entries. Returns the number of entries recovered (strays
  // count as one). Needs one fd while it recovers an entry. any-thread.
  size_t RecoverDead() const noexcept;

  MpmcStats stats() const noexcept;                        // snapshot (may be stale)
  uint64_t size() const noexcept { return stats().size; }  // approximate fill
  uint64_t capacity() const noexcept { return view_.slot_count; }
  uint64_t max_message_size() const noexcept { return view_.max_message_size; }
  // The mapped segment (an empty Segment once moved from).
  const Segment& segment() const noexcept;
  // Removes the name now; mapped handles keep working. kBadState once moved from.
  [[nodiscard]] Expected<void> Unlink() const;

  // Copies share the mapping (and the creator slot, held until the last copy goes). A
  // moved-from queue maps nothing: Producer()/Consumer()/Unlink() fail with kBadState,
  // stats() is all zero, RecoverDead() does nothing.
  MpmcQueue(const MpmcQueue&) = default;
  MpmcQueue& operator=(const MpmcQueue&) = default;
  MpmcQueue(MpmcQueue&& other) noexcept;
  MpmcQueue& operator=(MpmcQueue&& other) noexcept;

 private:
  MpmcQueue(std::shared_ptr<Segment> seg, MpmcGeometry g, std::shared_ptr<HolderLock> creator);
  // Claims a free registry entry for this process (recovering dead ones if none is free).
  Expected<internal::MpmcHandle> Register(uint32_t role) const;

  std::shared_ptr<Segment> segment_;
  // HolderLock kCreatorHolderSlot, in the creating process only (Create/CreateAnonymous):
  // the kernel's answer to "does the creator still run?" for stale-segment removal.
  std::shared_ptr<HolderLock> creator_lock_;
  MpmcGeometry geometry_{};
  MpmcView view_{};
  std::chrono::nanoseconds recovery_interval_ = std::chrono::milliseconds(10);
};

namespace internal {
// Recovers registry entry `idx` of the queue mapped by `seg` if the kernel says its holder
// died without leaving (its HolderLock slot is free, its owner word still set). Needs one
// fd for the entry's lock while it works (out of fds: recovers nothing now). True if it did.
bool RecoverMpmcEntry(const Segment& seg, const MpmcView& v, uint32_t idx) noexcept;
// Takes away stray claims - Claimed/Reading stamps naming an entry whose owner word is 0
// (mpmc_layout.h) - found at the queue's two heads or in a window of up to 1024 slots that
// moves on with every call. True if it did.
bool RecoverMpmcStrays(const Segment& seg, const MpmcView& v) noexcept;
// Recovers every dead entry and the strays; returns how many.
size_t RecoverMpmcDead(const Segment& seg, const MpmcView& v) noexcept;
}  // namespace internal

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_MPMC_QUEUE_H_
