// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// TopicPublisher: the one writer of a Topic (topic.h). Obtained from Topic::Publisher(),
// which claims the publisher role in the segment (one live process at a time, held as an
// OFD lock the kernel drops at death: the role of a dead publisher is taken over and its
// stream continues where it stopped).
//
//   auto pub = topic->Publisher();
//   auto buf = pub->loan(100);            // span in shared memory
//   std::memcpy(buf->data(), src, 100);
//   pub->publish();                       // every subscriber sees it; no copy
//   pub->send<Quote>(q);                  // typed topics: loan<T>() / send<T>()
//
// Publish costs the same for 1 or 4096 subscribers: the fast path writes the record, its
// terminator and one release store, and makes a futex_wake only when a subscriber sleeps.
// Subscriber positions are read only when the log is full:
//  - kOverwrite: never waits. Reclaiming the oldest records is a store of `head` (the
//    seqlock that tells lapped subscribers their record is gone).
//  - kBlock: waits (per WaitOptions) while the slowest live subscriber still needs the
//    oldest record. The positions are scanned only when the cached minimum says the log is
//    full; a subscriber the kernel reports dead (its slot lock dropped, topic_liveness.h)
//    is dropped, so a killed subscriber blocks the publisher at most one liveness check
//    (20 ms). A subscriber whose state cannot be read is waited for (never taken for dead).
//
// One loan at a time: loan, then publish() or cancel(). Messages on a typed topic are
// exactly type().size bytes (kTypeMismatch otherwise).
//
// Errors: kTooLarge, kTypeMismatch, kBadState (loan while loaned / publish without loan),
// kWouldBlock (try_loan, kBlock only), kTimedOut (loan), kClosed (after close()), kCorrupt
// (the segment's positions or records are inconsistent: nothing is written).
//
// Thread safety: producer-only (one thread at a time). Bound to the claiming process: a
// forked child's copy releases nothing when destroyed.
#ifndef SHMLINK_RINGBUF_TOPIC_PUBLISHER_H_
#define SHMLINK_RINGBUF_TOPIC_PUBLISHER_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include <shmlink/expected.h>
#include <shmlink/holder_lock.h>
#include <shmlink/ring_error.h>
#include <shmlink/segment.h>
#include <shmlink/topic_layout.h>
#include <shmlink/topic_type.h>
#include <shmlink/wait_options.h>

namespace shmlink {

class TopicPublisher {
 public:
  // Claims the publisher role of the topic in `region` (kRoleTaken if a live process holds
  // it) and resumes after the last record a previous publisher published.
  [[nodiscard]] static Expected<TopicPublisher> Claim(std::shared_ptr<const Segment> segment,
                                                      const TopicRegion& region);
  TopicPublisher(TopicPublisher&& other) noexcept;
  TopicPublisher& operator=(TopicPublisher&& other) noexcept;
  TopicPublisher(const TopicPublisher&) = delete;
  TopicPublisher& operator=(const TopicPublisher&) = delete;
  // Drops a pending loan and releases the role. Does NOT close the stream: subscribers
  // keep waiting for a successor (or see kPeerDead only if this process dies).
  ~TopicPublisher();

  uint64_t max_message_size() const noexcept { return region_.geometry.max_message_size; }
  TopicPolicy policy() const noexcept { return region_.geometry.policy; }
  TopicType type() const noexcept {
    return {region_.geometry.type_size, region_.geometry.type_align, region_.geometry.type_hash};
  }
  // Sequence number the next published message gets.
  uint64_t next_sequence() const noexcept { return seq_; }

  // Loans `n` writable bytes (16-byte aligned) in the log. kOverwrite never blocks.
  [[nodiscard]] Expected<std::span<std::byte>> try_loan(size_t n) noexcept;
  [[nodiscard]] Expected<std::span<std::byte>> loan(size_t n, const WaitOptions& opts = {});
  // Publishes the loaned message; returns its sequence number. kBadState without a loan.
  [[nodiscard]] Expected<uint64_t> publish() noexcept;
  // Drops the loan (nothing is published).
  void cancel() noexcept { loaned_ = false; }

  // Copying convenience: loan + memcpy + publish.
  [[nodiscard]] Expected<uint64_t> send(std::span<const std::byte> msg,
                                        const WaitOptions& opts = {});

  // Typed forms: the topic must have been created for T (kTypeMismatch otherwise).
  template <typename T>
  [[nodiscard]] Expected<T*> loan(const WaitOptions& opts = {}) {
    if (!(type() == TopicTypeOf<T>())) return RingErrc::kTypeMismatch;
    auto s = loan(sizeof(T), opts);
    if (!s) return MakeUnexpected(s.error());
    return reinterpret_cast<T*>(s->data());
  }
  template <typename T>
  requires(!std::is_convertible_v<const T&, std::span<const std::byte>>)
      [[nodiscard]] Expected<uint64_t> send(const T& value, const WaitOptions& opts = {}) {
    auto p = loan<T>(opts);
    if (!p) return MakeUnexpected(p.error());
    std::memcpy(static_cast<void*>(*p), &value, sizeof(T));
    return publish();
  }

  // Marks end of stream: subscribers drain what was published, then get kClosed. Later
  // loans fail with kClosed. A later publisher (after this one is destroyed) reopens.
  void close() noexcept;

  // Live subscribers (snapshot).
  uint32_t subscriber_count() const noexcept;

 private:
  TopicPublisher(std::shared_ptr<const Segment> seg, const TopicRegion& region, HolderLock lock,
                 uint64_t owner);
  void Resume() noexcept;
  // Size of the record at `pos` (a record boundary in [head, tail)), or 0 if its header is
  // inconsistent.
  uint64_t RecordSpanAt(uint64_t pos) const noexcept;
  Expected<void> Reclaim(uint64_t target) noexcept;
  Expected<void> ReclaimBlocking(uint64_t x) noexcept;
  uint64_t ScanSlots() noexcept;
  bool DropDeadSubscribersBelow(uint64_t x) noexcept;

  std::shared_ptr<const Segment> segment_;
  TopicRegion region_;
  HolderLock lock_;  // the role, as the kernel sees it (topic_liveness.h)
  uint64_t owner_word_ = 0;
  uint64_t mask_ = 0;
  uint64_t tail_ = 0;       // published end (position of the terminator)
  uint64_t seq_ = 0;        // sequence of the next message
  uint64_t head_ = 0;       // records below are reclaimed (ours to overwrite)
  uint64_t announced_ = 0;  // kBlock: last value stored to control->head_pos
  uint64_t safe_ = 0;       // kBlock: no live subscriber is below this (last scan)
  // kBlock, history K > 0: positions of the last K records (ring by sequence), so that the
  // announcement keeps the last K messages for joiners. history_known_ counts the valid
  // entries (a successor starts with none and keeps everything until it has K).
  std::vector<uint64_t> history_pos_;
  uint64_t history_known_ = 0;
  std::chrono::steady_clock::time_point next_liveness_{};
  // The loan.
  uint64_t loan_size_ = 0;
  bool loan_pad_ = false;
  bool loaned_ = false;
  bool closed_ = false;
  bool corrupt_ = false;
};

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_TOPIC_PUBLISHER_H_
