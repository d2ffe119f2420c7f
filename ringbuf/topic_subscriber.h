// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// TopicSubscriber: one reader of a Topic (topic.h). Obtained from Topic::Subscriber(), which
// claims a subscriber slot (max_subscribers per topic, each held as an OFD lock the kernel
// drops at death; a dead holder's slot is reused).
//
//   auto sub = topic->Subscriber();
//   auto msg = sub->receive();           // blocks; msg->data is a span in shared memory
//   use(msg->data);
//   if (auto ok = sub->release(); !ok) { /* kOverrun: msg was overwritten while read */ }
//
// A new subscriber first receives the last `history` messages still in the log, then every
// message published after it joined, in order, each exactly once - unless (kOverwrite) the
// publisher laps it: then receive() or release() fails once with kOverrun, last_loss() says
// how many messages were lost (the one being read included, if release() reported it), and
// the next receive() continues from the oldest message still intact. Data is read in place
// and never returned torn: release() re-checks, after the reads, that the record was not
// reclaimed meanwhile. Under kBlock nothing is ever lost: the publisher waits for this
// subscriber (until it releases, leaves, or dies).
//
// Waiting is the rings' spin-then-futex wait (WaitOptions): all sleeping subscribers of a
// topic share one futex word, so one wake reaches them all and a publication makes no
// system call while none sleeps. receive() returns kPeerDead when the publisher died and
// everything it published was received (a successor publisher resumes the stream), and
// kClosed after the publisher's close() once everything was received.
//
// fd(): an eventfd that becomes readable when messages may be pending, for poll/epoll/
// asyncio. It is fed by a helper thread started on the first call (sleeping on the
// topic's futex, so the publisher's fast path is unchanged). Protocol: when the fd is
// readable, read it (8 bytes) FIRST, then receive with try_receive() until kWouldBlock.
//
// Errors: kWouldBlock (try_receive), kTimedOut, kClosed, kPeerDead, kOverrun, kTypeMismatch
// (typed receive on a topic of another type), kCorrupt (inconsistent records: nothing
// outside the log is ever read).
//
// Thread safety: consumer-only (one thread at a time); fd() may be used from any thread.
// Bound to the joining process: a forked child's copy leaves nothing when destroyed (the
// slot, its position and the fd() notifier stay the parent's).
// Bound to the claiming process.
#ifndef SHMLINK_RINGBUF_TOPIC_SUBSCRIBER_H_
#define SHMLINK_RINGBUF_TOPIC_SUBSCRIBER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include <shmlink/expected.h>
#include <shmlink/holder_lock.h>
#include <shmlink/ring_error.h>
#include <shmlink/segment.h>
#include <shmlink/topic_layout.h>
#include <shmlink/topic_type.h>
#include <shmlink/wait_options.h>

namespace shmlink {

class ReadinessNotifier;

// One received message, in place. Valid until release() (and, under kOverwrite, only if
// release() then succeeds).
struct TopicSample {
  std::span<const std::byte> data;
  uint64_t seq = 0;  // the publisher's sequence number of this message
};

class TopicSubscriber {
 public:
  // Claims a free (or dead holder's) slot and positions it at the history start.
  // kRoleTaken if all max_subscribers slots are held by live processes.
  [[nodiscard]] static Expected<TopicSubscriber> Join(std::shared_ptr<const Segment> segment,
                                                      const TopicRegion& region);
  TopicSubscriber(TopicSubscriber&& other) noexcept;
  TopicSubscriber& operator=(TopicSubscriber&& other) noexcept;
  TopicSubscriber(const TopicSubscriber&) = delete;
  TopicSubscriber& operator=(const TopicSubscriber&) = delete;
  // Leaves: frees the slot (the publisher no longer waits for it).
  ~TopicSubscriber();

  TopicPolicy policy() const noexcept { return region_.geometry.policy; }
  TopicType type() const noexcept {
    return {region_.geometry.type_size, region_.geometry.type_align, region_.geometry.type_hash};
  }
  uint64_t max_message_size() const noexcept { return region_.geometry.max_message_size; }

  // The next message in place. Idempotent until release(): returns the held message again.
  [[nodiscard]] Expected<TopicSample> try_receive() noexcept;
  [[nodiscard]] Expected<TopicSample> receive(const WaitOptions& opts = {});
  // Ends the read of the held message (no-op without one). kOverrun (kOverwrite only) if it
  // was reclaimed while held: its bytes may have been torn; the subscriber has moved on.
  [[nodiscard]] Expected<void> release() noexcept;

  // Typed receive: the topic must have been created for T (kTypeMismatch otherwise).
  template <typename T>
  [[nodiscard]] Expected<const T*> receive(const WaitOptions& opts = {}) {
    if (!(type() == TopicTypeOf<T>())) return RingErrc::kTypeMismatch;
    auto s = receive(opts);
    if (!s) return MakeUnexpected(s.error());
    return reinterpret_cast<const T*>(s->data.data());
  }

  // Messages lost in the last kOverrun, and in total.
  uint64_t last_loss() const noexcept { return last_loss_; }
  uint64_t total_lost() const noexcept { return total_lost_; }
  // Sequence of the next message this subscriber will receive.
  uint64_t next_sequence() const noexcept { return seq_; }
  uint32_t slot() const noexcept { return slot_index_; }

  // See the file comment. Errors: errno of eventfd/thread creation.
  [[nodiscard]] Expected<int> fd();

 private:
  TopicSubscriber(std::shared_ptr<const Segment> seg, const TopicRegion& region, uint32_t slot,
                  HolderLock lock, uint64_t owner);
  Expected<void> Position() noexcept;
  Expected<void> PinBlock(uint64_t* start) noexcept;
  RingErrc Overrun() noexcept;
  bool Lapped() const noexcept;
  void Store() noexcept;
  void Leave() noexcept;

  std::shared_ptr<const Segment> segment_;
  TopicRegion region_;
  uint32_t slot_index_ = 0;
  HolderLock lock_;  // the slot, as the kernel sees it (topic_liveness.h)
  uint64_t owner_word_ = 0;
  uint64_t mask_ = 0;
  uint64_t pos_ = 0;  // position of the next (or held) record
  uint64_t seq_ = 0;  // its sequence
  uint64_t held_end_ = 0;
  uint64_t last_loss_ = 0;
  uint64_t total_lost_ = 0;
  TopicSample held_{};
  bool holding_ = false;
  bool corrupt_ = false;
  std::unique_ptr<ReadinessNotifier> notifier_;
};

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_TOPIC_SUBSCRIBER_H_
