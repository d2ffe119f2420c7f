// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// SpscRing: a single-producer/single-consumer ring of variable-length messages in POSIX
// shared memory, shared by two processes that meet by name.
//
//   // process A                                 // process B
//   auto ring = SpscRing::Create("/feed", 1<<20);  auto ring = SpscRing::Attach("/feed");
//   auto tx = ring->Producer();                    auto rx = ring->Consumer();
//   auto buf = tx->reserve(100);                   auto msg = rx->peek();  // blocks
//   std::memcpy(buf->data(), src, 100);            use(msg->data(), msg->size());
//   tx->commit();                                  rx->release();
//
// Zero copy: reserve() hands out a span inside the ring; commit() publishes every span
// reserved since the last commit (a batch); peek() hands out a read-only span of the next
// message in place; release() frees it. advance() steps past a peeked message without
// freeing it yet, so several messages can be read in place and freed by one release().
//
// Sizes: capacity is a power of two in [256 B, 4 GiB]; max_message_size() is
// capacity/2 - 8. Messages may be empty. A larger request fails with kTooLarge. Records
// (8-byte header + payload rounded up to 8) occupy at most capacity - 8 bytes at a time.
//
// Results: every call returns Expected; errors are RingErrc values:
//   kWouldBlock (try_ forms: full / empty)     kTimedOut (blocking forms with a timeout)
//   kClosed     (reader: writer closed and all was drained; writer: reader closed)
//   kPeerDead   (blocking forms, and try_peek once fd() saw it: the process holding the
//               other role died; reported after draining)
//   kCorrupt    (indices or records are inconsistent: never read or written out of bounds)
//
// Roles: Producer() and Consumer() each claim their role by taking its holder lock, an
// OFD lock the kernel drops when the holder dies or execs (holder_lock.h; the slots are in
// spsc_layout.h). A role whose lock is held is never taken, whatever /proc says: a second
// claimant gets kRoleTaken. A dead holder's role is taken over. The segment also names
// each holder (pid + start time) for tools. Liveness needs no /proc: holders in other PID
// namespaces, checkers out of file descriptors and a hidden /proc all get the truth.
// Handles keep the mapping alive; they are move-only and bound to the process that claimed
// them (do not use them across fork()). A forked child that destroys an inherited handle
// only drops its copy of the mapping: the role (and, for a consumer, the read position)
// stays the claiming process's, and the child holds no role (its peer does not wait for it
// after the claimer died). A moved-from handle or ring holds nothing: its calls return
// kBadState (or do nothing), never touch the segment.
//
// Crash recovery: a producer taking the role over resumes after the last record whose
// header word its predecessor published (even one the consumer already read: a published
// header is a commit, spsc_layout.h); a consumer taking over resumes at the last release
// (advanced but unreleased messages are delivered again: at-least-once). A successor of a
// holder that died asleep also resets that holder's announced wait, so the other side does
// not keep paying for a sleeper that is gone.
//
// Event loops: SpscConsumer::fd() is an eventfd for poll/epoll/asyncio (see there).
//
// Thread safety: a SpscProducer is producer-only (one thread at a time), a SpscConsumer is
// consumer-only. Producer and consumer may run concurrently in any two threads/processes.
#ifndef SHMLINK_RINGBUF_SPSC_RING_H_
#define SHMLINK_RINGBUF_SPSC_RING_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include <shmlink/expected.h>
#include <shmlink/holder_lock.h>
#include <shmlink/ring_error.h>
#include <shmlink/segment.h>
#include <shmlink/spsc_layout.h>
#include <shmlink/wait_options.h>

namespace shmlink {

class ReadinessNotifier;

// Write side. producer-only.
class SpscProducer {
 public:
  // Binds to ring `region` inside `segment` and claims the producer role (takes its holder
  // lock; no /proc read decides it). Errors: kRoleTaken (a live holder has it),
  // kInvalidArgument (no segment or region), the errno of opening the lock's token (e.g.
  // EMFILE): a claim that fails takes nothing.
  [[nodiscard]] static Expected<SpscProducer> Claim(std::shared_ptr<const Segment> segment,
                                                    SpscRegion region);
  SpscProducer(SpscProducer&& other) noexcept;
  SpscProducer& operator=(SpscProducer&& other) noexcept;
  SpscProducer(const SpscProducer&) = delete;
  SpscProducer& operator=(const SpscProducer&) = delete;
  // Releases the role. Uncommitted reservations are dropped; the stream is NOT closed.
  // In another process than the one that claimed the role (an inherited copy after
  // fork()), releases nothing: the role stays its claimer's.
  ~SpscProducer();
  // A moved-from producer: try_reserve/reserve/send fail with kBadState, commit/cancel/
  // close do nothing.

  uint64_t capacity() const noexcept { return region_.capacity; }
  uint64_t max_message_size() const noexcept { return SpscMaxMessageSize(region_.capacity); }

  // Reserves `n` writable bytes for one message. The span stays valid until commit() or
  // cancel(). Several reservations may be pending; commit() publishes them all in order.
  // Errors: kTooLarge, kWouldBlock (not enough free space), kClosed (reader closed or this
  // producer closed), kCorrupt.
  [[nodiscard]] Expected<std::span<std::byte>> try_reserve(size_t n) noexcept;
  // As try_reserve, waiting for space per `opts`. Extra errors: kTimedOut, kPeerDead.
  [[nodiscard]] Expected<std::span<std::byte>> reserve(size_t n, const WaitOptions& opts = {});

  // Publishes every pending reservation (no-op if none). Wakes a sleeping reader.
  void commit() noexcept;
  // Drops every pending reservation.
  void cancel() noexcept;
  // Number of reservations not yet committed.
  uint32_t pending() const noexcept { return pending_count_; }

  // Copying conveniences: reserve + memcpy + commit.
  [[nodiscard]] Expected<void> try_send(std::span<const std::byte> msg) noexcept;
  [[nodiscard]] Expected<void> send(std::span<const std::byte> msg, const WaitOptions& opts = {});

  // Commits pending reservations and marks end-of-stream: the reader drains what was
  // committed, then gets kClosed. Idempotent.
  void close() noexcept;
  // True once the consumer called close() (further writes fail with kClosed).
  bool reader_closed() const noexcept;

 private:
  SpscProducer(std::shared_ptr<const Segment> seg, SpscRegion region, HolderLock lock,
               uint64_t owner);
  Expected<std::span<std::byte>> TryReserveImpl(size_t n) noexcept;
  std::error_code StateError() const noexcept;
  void PutWord(uint64_t pos, uint64_t word) noexcept;
  void ResumeInterruptedCommit() noexcept;

  std::shared_ptr<const Segment> segment_;
  SpscRegion region_;
  HolderLock lock_;  // the role's holder lock: held by the claiming process only
  uint64_t owner_word_ = 0;
  uint64_t mask_ = 0;
  uint64_t write_pos_ = 0;        // local: end of the last reservation
  uint64_t committed_pos_ = 0;    // published end (last value stored to control->write_pos)
  uint64_t cached_read_pos_ = 0;  // local copy of control->read_pos (refreshed when full)
  uint64_t first_word_ = 0;       // header word of the batch's first record (at committed_pos_)
  uint64_t pending_bytes_ = 0;    // payload bytes reserved since the last commit (counters)
  uint64_t committed_msgs_ = 0;   // running totals, mirrored to control->producer_stats
  uint64_t committed_bytes_ = 0;  // (we are their only writer: stores, no loads)
  uint32_t pending_count_ = 0;
  bool closed_ = false;
  bool corrupt_ = false;  // positions found inconsistent when claimed, or moved from
};

// Read side. consumer-only.
class SpscConsumer {
 public:
  // As SpscProducer::Claim, for the consumer role.
  [[nodiscard]] static Expected<SpscConsumer> Claim(std::shared_ptr<const Segment> segment,
                                                    SpscRegion region);
  SpscConsumer(SpscConsumer&& other) noexcept;
  SpscConsumer& operator=(SpscConsumer&& other) noexcept;
  SpscConsumer(const SpscConsumer&) = delete;
  SpscConsumer& operator=(const SpscConsumer&) = delete;
  // Releases the role; advanced messages are released first. In another process than the
  // one that claimed the role (an inherited copy after fork()), releases nothing and
  // leaves fd()'s notifier alone (its thread exists only in the claimer).
  ~SpscConsumer();
  // A moved-from consumer: try_peek/peek/recv/advance/fd fail with kBadState, release and
  // close do nothing, size_bytes() is 0.

  uint64_t capacity() const noexcept { return region_.capacity; }
  uint64_t max_message_size() const noexcept { return SpscMaxMessageSize(region_.capacity); }

  // The next message not yet advanced past, in place. Idempotent until advance()/release().
  // The span stays valid until release() (or until the consumer is destroyed).
  // Errors: kWouldBlock (empty), kClosed (writer closed, all drained), kCorrupt.
  [[nodiscard]] Expected<std::span<const std::byte>> try_peek() noexcept;
  // As try_peek, waiting per `opts`. Extra errors: kTimedOut, kPeerDead.
  // Messages advanced past but not released keep their space: if they fill the ring, the
  // writer cannot add the next message. release() before a blocking peek() in that case
  // (unlike reserve(), which commits pending reservations itself, peek() cannot release
  // for you: the advanced spans must stay valid until you say so).
  [[nodiscard]] Expected<std::span<const std::byte>> peek(const WaitOptions& opts = {});

  // Steps past the peeked message without freeing its bytes (batch reading). Errors:
  // kBadState if nothing is peeked.
  [[nodiscard]] Expected<void> advance() noexcept;
  // Frees the peeked message (if any) and every message advanced past. Wakes a writer
  // waiting for space.
  void release() noexcept;

  // Copying conveniences: peek + memcpy + release. Returns the message size. If `buf` is
  // too small, fails with kTooLarge and leaves the message in the ring.
  [[nodiscard]] Expected<size_t> try_recv(std::span<std::byte> buf) noexcept;
  [[nodiscard]] Expected<size_t> recv(std::span<std::byte> buf, const WaitOptions& opts = {});

  // Tells the writer that nobody will read any more (its writes then fail with kClosed).
  void close() noexcept;
  // Bytes committed and not yet released (snapshot; may be stale).
  uint64_t size_bytes() const noexcept;

  // An eventfd for poll/epoll/asyncio: readable when a message may be pending, when the
  // writer closed the ring, and when the writer died. Created on the first call (later
  // calls return the same fd) with a helper thread that sleeps on the ring's futex like a
  // blocked peek() (ringbuf/readiness_notifier.h): the producer's fast path is unchanged,
  // and it makes its usual wake call only while that thread sleeps.
  // Protocol: when the fd is readable, read it (8 bytes, non-blocking) FIRST, then receive
  // with try_peek()/try_recv() until kWouldBlock. The end shows up there: kClosed after
  // the writer's close(), kPeerDead after its death (once fd() exists, try_peek reports a
  // dead writer as the blocking forms do, after everything it committed was read; a new
  // producer taking the role over clears it). The fd may be readable with nothing to
  // receive (e.g. the initial readiness, or a message already received): drain and poll
  // again. The handle owns the fd: it stays valid across moves of the handle and is closed
  // (its thread joined) when the handle is destroyed or assigned to. Do not close it.
  // Errors: errno of eventfd(2)/thread creation, kBadState on a moved-from handle.
  // Thread safety: a consumer call (same thread rules as try_peek); the returned fd may be
  // polled and read from any thread.
  [[nodiscard]] Expected<int> fd();

 private:
  SpscConsumer(std::shared_ptr<const Segment> seg, SpscRegion region, HolderLock lock,
               uint64_t owner);

  std::shared_ptr<const Segment> segment_;
  SpscRegion region_;
  HolderLock lock_;  // the role's holder lock: held by the claiming process only
  uint64_t owner_word_ = 0;
  uint64_t mask_ = 0;
  uint64_t read_pos_ = 0;        // last value stored to control->read_pos
  uint64_t cursor_ = 0;          // past every advanced message
  uint64_t peeked_end_ = 0;      // end of the peeked record when peeked_
  uint64_t peeked_offset_ = 0;   // payload offset in the data region when peeked_
  uint32_t peeked_length_ = 0;   // payload length when peeked_
  uint64_t consumed_msgs_ = 0;   // running totals incl. advanced messages; stored to
  uint64_t consumed_bytes_ = 0;  // control->consumer_stats at each release (single writer)
  bool peeked_ = false;
  bool corrupt_ = false;  // read_pos found misaligned when claimed, or moved from
  std::unique_ptr<ReadinessNotifier> notifier_;  // fd(), created on its first call
};

// Owner of a named segment holding one ring.
class SpscRing {
 public:
  struct CreateOptions {
    // kUnlinkOnDestroy: the creator owns the name (removed when this SpscRing dies).
    UnlinkPolicy unlink = UnlinkPolicy::kUnlinkOnDestroy;
    mode_t mode = 0600;
    // If the name exists but nobody holds its creator's or either role's holder lock (the
    // kernel says they all died or left), replace it.
    bool reclaim_stale = true;
  };

  // Creates the segment `name` with a ring of `capacity` bytes (power of two). The ring
  // (and its copies) holds the segment's creator lock until the last of them is gone.
  // Errors: those of Segment::Create, kInvalidArgument for a bad capacity, the errno of
  // taking the creator lock (e.g. EMFILE; the new name is removed again).
  [[nodiscard]] static Expected<SpscRing> Create(std::string_view name, uint64_t capacity,
                                                 const CreateOptions& options);
  [[nodiscard]] static Expected<SpscRing> Create(std::string_view name, uint64_t capacity) {
    return Create(name, capacity, CreateOptions{});
  }
  // Attaches to an existing ring, validating header and geometry first.
  [[nodiscard]] static Expected<SpscRing> Attach(std::string_view name);

  // Claim the ring's roles (see SpscProducer::Claim). kBadState on a moved-from ring.
  [[nodiscard]] Expected<SpscProducer> Producer() const;
  [[nodiscard]] Expected<SpscConsumer> Consumer() const;

  uint64_t capacity() const noexcept { return geometry_.capacity; }
  uint64_t max_message_size() const noexcept { return SpscMaxMessageSize(geometry_.capacity); }
  // The mapped segment (an empty Segment for a moved-from ring).
  const Segment& segment() const noexcept;
  // Removes the name now; mapped handles keep working. kBadState on a moved-from ring.
  [[nodiscard]] Expected<void> Unlink() const;

  // Moving leaves the source empty (its calls return kBadState); copies share the mapping
  // and the creator lock.
  SpscRing(SpscRing&& other) noexcept;
  SpscRing& operator=(SpscRing&& other) noexcept;
  SpscRing(const SpscRing&) = default;
  SpscRing& operator=(const SpscRing&) = default;
  ~SpscRing() = default;

 private:
  SpscRing(std::shared_ptr<Segment> seg, SpscGeometry g, std::shared_ptr<HolderLock> creator)
      : segment_(std::move(seg)), geometry_(g), creator_lock_(std::move(creator)) {}
  std::shared_ptr<Segment> segment_;
  SpscGeometry geometry_{};
  std::shared_ptr<HolderLock> creator_lock_;  // Create() only: kCreatorHolderSlot
};

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_SPSC_RING_H_
