// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Liveness of a topic's role holders, as the kernel vouches for it (holder_lock.h).
//
// Holder slots of a topic segment: slot 0 is the publisher, slot 1 + i is subscriber slot i.
// Each holder keeps an OFD lock on its slot for as long as it lives; the owner words in the
// segment (packed pid + start time) only name who holds what, for tools and to tell "died"
// from "left": a holder that leaves clears its owner word before it drops its lock.
//
// Unknown is not dead: every function here says "dead" only when the kernel reports the
// lock free and the owner word still names the same holder afterwards.
#ifndef SHMLINK_RINGBUF_TOPIC_LIVENESS_H_
#define SHMLINK_RINGBUF_TOPIC_LIVENESS_H_

#include <cstdint>

#include <shmlink/segment.h>
#include <shmlink/topic_layout.h>

namespace shmlink {

inline constexpr uint64_t kTopicPublisherHolderSlot = 0;
inline constexpr uint64_t TopicSubscriberHolderSlot(uint32_t slot) noexcept {
  return uint64_t{1} + slot;
}

// True if a publisher claimed the role and died without leaving it (any-thread; one fcntl).
bool TopicPublisherDied(const Segment& segment, const TopicControl& control) noexcept;

// True if the holder `owner` (the value read from the slot's owner word) of subscriber slot
// `slot` died without leaving (any-thread; one fcntl).
bool TopicSubscriberDied(const Segment& segment, const TopicSlot& slot_state, uint32_t slot,
                         uint64_t owner) noexcept;

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_TOPIC_LIVENESS_H_
