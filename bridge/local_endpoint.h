// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The local side of a bridge: what it reads from (LocalSource, exporting side) and writes
// into (LocalSink, importing side), over the unchanged shmlink ring and queue.
//
// LocalSource hands out messages in place and consumes them only when told they were
// acknowledged (Done), so nothing the exporter took is lost if it dies:
//   ring:  try_peek + advance; the ring is release()d once every message taken so far is
//          done (SpscConsumer frees all advanced messages at once). Held bytes are bounded
//          by the caller (window).
//   queue: a pool of consumer handles, each holding one claimed message until Done
//          releases it. If the process dies, the queue redelivers the held messages
//          (flagged) to the next consumer.
// LocalSink writes in order: ring: try_reserve + copy, commit on Flush; queue: try_claim +
// copy + publish (publish_redelivered for flagged records).
//
// Thread safety: not-thread-safe (the bridge's one event loop owns them).
#ifndef SHMLINK_BRIDGE_LOCAL_ENDPOINT_H_
#define SHMLINK_BRIDGE_LOCAL_ENDPOINT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bridge/wire.h"

#include <shmlink/expected.h>
#include <shmlink/mpmc_queue.h>
#include <shmlink/spsc_ring.h>
#include <shmlink/topic.h>

namespace shmlink::bridge {

// How to create the local object when it does not exist yet (it then stays after the
// bridge exits, so a restarted bridge or late applications find it).
struct LocalOptions {
  uint64_t ring_capacity = 1 << 20;   // bytes, power of two
  uint64_t queue_slots = 1024;        // power of two
  uint64_t queue_max_message = 4096;  // bytes per slot
  uint32_t queue_handles = 64;        // exporting queue: messages held in flight at most
  uint64_t topic_capacity = 1 << 20;  // bytes of the log, power of two (policy kBlock)
};

// The exporting side of a topic: one subscriber of the local topic. A topic is fanned out
// to every importer without acknowledgements: each message is released as soon as it was
// copied into a batch, and the topic's own sequence numbers travel with it, so an importer
// counts what it missed (a lapped kOverwrite subscriber here, a full ZeroMQ queue there).
class LocalTopicSource {
 public:
  [[nodiscard]] static Expected<std::unique_ptr<LocalTopicSource>> Open(const std::string& name,
                                                                        const LocalOptions& opts);
  // The next message in place (valid until Release). kWouldBlock, kOverrun (lost
  // last_loss() messages, try again), kClosed, kPeerDead (publisher died: try again).
  [[nodiscard]] Expected<TopicSample> TryReceive() noexcept { return sub_.try_receive(); }
  // kOverrun: the message was overwritten while copied (drop the copy).
  [[nodiscard]] Expected<void> Release() noexcept { return sub_.release(); }
  uint64_t last_loss() const noexcept { return sub_.last_loss(); }
  uint64_t total_lost() const noexcept { return sub_.total_lost(); }
  uint64_t max_message_size() const noexcept { return topic_.max_message_size(); }

 private:
  LocalTopicSource(Topic t, TopicSubscriber s) : topic_(std::move(t)), sub_(std::move(s)) {}
  Topic topic_;
  TopicSubscriber sub_;
};

class LocalSource {
 public:
  struct Item {
    std::span<const std::byte> data;  // in place, valid until Done(token)
    bool redelivered = false;
    uint32_t token = 0;
  };

  // Attaches to (or creates) the ring/queue `name`. Errors of Attach/Create.
  [[nodiscard]] static Expected<std::unique_ptr<LocalSource>> Open(Kind kind,
                                                                   const std::string& name,
                                                                   const LocalOptions& opts);
  virtual ~LocalSource() = default;
  // The next message, in place. kWouldBlock (nothing now / no free handle), kClosed (ring:
  // writer closed and all taken), other RingErrc on corruption.
  [[nodiscard]] virtual Expected<Item> TryTake() noexcept = 0;
  // The message `token` was acknowledged by the importer: consume it locally.
  virtual void Done(uint32_t token) noexcept = 0;
  // Messages taken and not yet done.
  virtual uint64_t held() const noexcept = 0;
  virtual uint64_t max_message_size() const noexcept = 0;
};

class LocalSink {
 public:
  [[nodiscard]] static Expected<std::unique_ptr<LocalSink>> Open(Kind kind, const std::string& name,
                                                                 const LocalOptions& opts);
  virtual ~LocalSink() = default;
  // Writes one message (ring: visible after Flush). kWouldBlock: full, try later;
  // kTooLarge: can never fit; kClosed: the local reader is gone (ring).
  [[nodiscard]] virtual Expected<void> TryPut(std::span<const std::byte> data,
                                              bool redelivered) noexcept = 0;
  // Publishes what TryPut wrote (ring commit; no-op for the queue).
  virtual void Flush() noexcept = 0;
  // Ring: end of stream (the reader drains, then sees kClosed). Queue: no-op.
  virtual void Close() noexcept = 0;
  virtual uint64_t max_message_size() const noexcept = 0;
};

}  // namespace shmlink::bridge

#endif  // SHMLINK_BRIDGE_LOCAL_ENDPOINT_H_
