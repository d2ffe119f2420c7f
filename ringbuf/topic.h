// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Topic: publish/subscribe in POSIX shared memory. One publisher, up to max_subscribers
// subscribers (processes that meet by name), every subscriber sees every message, in
// place, with no copy.
//
//   // publisher process                       // any number of subscriber processes
//   TopicOptions o; o.history = 16;
//   auto t = Topic::Create<Quote>("/quotes", o);   auto t = Topic::Attach<Quote>("/quotes");
//   auto pub = t->Publisher();                     auto sub = t->Subscriber();
//   pub->send(Quote{...});                         auto q = sub->receive<Quote>();
//                                                  use(**q); sub->release();
//
// The log is a single-writer ring of variable-size records (topic_layout.h); publishing is
// O(1) in the number of subscribers. The slow-subscriber policy is fixed at creation:
// kBlock (the publisher waits for the slowest live subscriber) or kOverwrite (it never
// waits; a lapped subscriber gets kOverrun with the exact number of messages it lost and
// continues from the oldest intact one). See topic_publisher.h and topic_subscriber.h.
//
// Typed topics (Create<T>/Attach<T>) record sizeof(T), alignof(T) and a hash of T's name
// (topic_type.h); Attach<T> of a topic made for another type fails with kTypeMismatch.
//
// Crash story: a subscriber killed with kill -9 blocks a kBlock publisher for at most
// about one liveness check (20 ms); a killed publisher's subscribers receive everything it
// published, then kPeerDead; a new Publisher() (any process) takes the dead one's role
// over and continues the stream with the next sequence number.
//
// Thread safety: Topic is immutable after creation (any-thread); handles: see their files.
#ifndef SHMLINK_RINGBUF_TOPIC_H_
#define SHMLINK_RINGBUF_TOPIC_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string_view>

#include <shmlink/expected.h>
#include <shmlink/holder_lock.h>
#include <shmlink/ring_error.h>
#include <shmlink/segment.h>
#include <shmlink/topic_layout.h>
#include <shmlink/topic_publisher.h>
#include <shmlink/topic_subscriber.h>
#include <shmlink/topic_type.h>

namespace shmlink {

struct TopicOptions {
  // Bytes of the log: a power of two in [4 KiB, 64 GiB]. Each message takes its size plus
  // a 16-byte header, rounded up to 16.
  uint64_t capacity = uint64_t{1} << 20;
  // Largest message, in [1, capacity/4 - 16]; 0 picks capacity/4 - 16.
  uint64_t max_message_size = 0;
  // Subscriber slots, in [1, 4096].
  uint32_t max_subscribers = 256;
  // K: a new subscriber first receives the last K messages. They are kept as long as the
  // log can hold them (K records of the largest size must fit in about capacity/2 to be
  // always there); at most min(65536, capacity / 16).
  uint64_t history = 0;
  TopicPolicy policy = TopicPolicy::kBlock;
  // Message type (set by Create<T>); untyped if size == 0.
  TopicType type{};
  // kUnlinkOnDestroy: the creator owns the name (removed when this Topic dies).
  UnlinkPolicy unlink = UnlinkPolicy::kUnlinkOnDestroy;
  mode_t mode = 0600;
  // If the name exists but nobody holds its creator's, publisher's or any subscriber's
  // holder lock (all dead, exec'd or gone: the kernel says so), replace it.
  bool reclaim_stale = true;
};

class Topic {
 public:
  // Errors: kInvalidArgument (an option out of range), those of Segment::Create.
  [[nodiscard]] static Expected<Topic> Create(std::string_view name, const TopicOptions& options);
  template <typename T>
  [[nodiscard]] static Expected<Topic> Create(std::string_view name, TopicOptions options = {}) {
    options.type = TopicTypeOf<T>();
    return Create(name, options);
  }
  // Attaches by name, validating header and geometry first (a corrupt or foreign segment is
  // an error, never a crash). Errors: those of Segment::Open and ValidateTopicSegment.
  [[nodiscard]] static Expected<Topic> Attach(std::string_view name);
  template <typename T>
  [[nodiscard]] static Expected<Topic> Attach(std::string_view name) {
    auto t = Attach(name);
    if (t && !(t->type() == TopicTypeOf<T>())) return RingErrc::kTypeMismatch;
    return t;
  }

  // Claims the publisher role (see topic_publisher.h).
  [[nodiscard]] Expected<TopicPublisher> Publisher() const;
  // Joins as a new subscriber (see topic_subscriber.h).
  [[nodiscard]] Expected<TopicSubscriber> Subscriber() const;

  uint64_t capacity() const noexcept { return region_.geometry.capacity; }
  uint64_t max_message_size() const noexcept { return region_.geometry.max_message_size; }
  uint32_t max_subscribers() const noexcept { return region_.geometry.max_subscribers; }
  uint64_t history() const noexcept { return region_.geometry.history; }
  TopicPolicy policy() const noexcept { return region_.geometry.policy; }
  TopicType type() const noexcept {
    return {region_.geometry.type_size, region_.geometry.type_align, region_.geometry.type_hash};
  }
  // Live subscribers and messages published so far (snapshots).
  uint32_t subscriber_count() const noexcept;
  uint64_t published() const noexcept;
  const Segment& segment() const noexcept { return *segment_; }
  // Removes the name now; mapped handles keep working.
  [[nodiscard]] Expected<void> Unlink() const { return segment_->Unlink(); }

 private:
  Topic(std::shared_ptr<Segment> seg, const TopicGeometry& g,
        std::shared_ptr<HolderLock> creator = nullptr)
      : segment_(std::move(seg)),
        region_(TopicRegionOf(*segment_, g)),
        creator_lock_(std::move(creator)) {}
  std::shared_ptr<Segment> segment_;
  TopicRegion region_;
  // Create() only: kCreatorHolderSlot, held while this Topic or a copy of it lives (the
  // kernel's word for stale-topic removal that the creator still runs).
  std::shared_ptr<HolderLock> creator_lock_;
};

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_TOPIC_H_
