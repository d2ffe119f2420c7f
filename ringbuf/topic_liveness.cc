// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <atomic>

#include <shmlink/holder_lock.h>
#include <shmlink/topic_liveness.h>

namespace shmlink {

bool TopicPublisherDied(const Segment& segment, const TopicControl& control) noexcept {
  // seq_cst loads around the probe: a publisher that leaves clears the word (seq_cst)
  // before it drops its lock, so a lock seen free with the word still set is a death.
  const uint64_t owner = control.publisher_owner.load(std::memory_order_seq_cst);
  if (owner == 0) return false;  // nobody holds the role: waiting for one is not death
  if (ProbeHolder(segment, kTopicPublisherHolderSlot) != HolderState::kDead) return false;
  return control.publisher_owner.load(std::memory_order_seq_cst) == owner;
}

bool TopicSubscriberDied(const Segment& segment, const TopicSlot& slot_state, uint32_t slot,
                         uint64_t owner) noexcept {
  if (owner == 0) return false;
  if (ProbeHolder(segment, TopicSubscriberHolderSlot(slot)) != HolderState::kDead) return false;
  // As above (SYNC as in TopicPublisherDied).
  return slot_state.owner.load(std::memory_order_seq_cst) == owner;
}

}  // namespace shmlink
