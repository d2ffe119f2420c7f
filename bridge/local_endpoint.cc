// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "bridge/local_endpoint.h"

#include <cstring>
#include <utility>

#include <shmlink/ring_error.h>

namespace shmlink::bridge {
namespace {

bool IsErr(const std::error_code& ec, RingErrc e) noexcept { return ec == make_error_code(e); }

Expected<SpscRing> OpenRing(const std::string& name, const LocalOptions& o) {
  auto r = SpscRing::Attach(name);
  if (r) return r;
  SpscRing::CreateOptions co;
  co.unlink = UnlinkPolicy::kKeep;
  auto c = SpscRing::Create(name, o.ring_capacity, co);
  if (!c && c.error() == std::errc::file_exists) return SpscRing::Attach(name);  // lost a race
  return c;
}

Expected<MpmcQueue> OpenQueue(const std::string& name, const LocalOptions& o) {
  auto r = MpmcQueue::Attach(name);
  if (r) return r;
  MpmcQueue::CreateOptions co;
  co.unlink = UnlinkPolicy::kKeep;
  auto c = MpmcQueue::Create(name, o.queue_slots, o.queue_max_message, co);
  if (!c && c.error() == std::errc::file_exists) return MpmcQueue::Attach(name);
  return c;
}

// ---------------------------------------------------------------- ring

class RingSource final : public LocalSource {
 public:
  RingSource(SpscRing ring, SpscConsumer rx) : ring_(std::move(ring)), rx_(std::move(rx)) {}

  Expected<Item> TryTake() noexcept override {
    auto m = rx_.try_peek();
    if (!m) return MakeUnexpected(m.error());
    Item it{*m, false, 0};
    (void)rx_.advance();  // cannot fail: a message is peeked
    ++taken_;
    return it;
  }
  void Done(uint32_t) noexcept override {
    // release() frees every advanced message at once: wait until all taken are done.
    if (++done_ == taken_) {
      rx_.release();
      taken_ = done_ = 0;
    }
  }
  uint64_t held() const noexcept override { return taken_ - done_; }
  uint64_t max_message_size() const noexcept override { return ring_.max_message_size(); }

 private:
  SpscRing ring_;
  SpscConsumer rx_;
  uint64_t taken_ = 0;
  uint64_t done_ = 0;
};

class RingSink final : public LocalSink {
 public:
  RingSink(SpscRing ring, SpscProducer tx) : ring_(std::move(ring)), tx_(std::move(tx)) {}
  Expected<void> TryPut(std::span<const std::byte> data, bool) noexcept override {
    auto s = tx_.try_reserve(data.size());
    if (!s) {
      // Full: let the reader see what is already written while we wait for space.
      if (IsErr(s.error(), RingErrc::kWouldBlock)) tx_.commit();
      return MakeUnexpected(s.error());
    }
    if (!data.empty()) std::memcpy(s->data(), data.data(), data.size());
    return {};
  }
  void Flush() noexcept override { tx_.commit(); }
  void Close() noexcept override { tx_.close(); }
  uint64_t max_message_size() const noexcept override { return ring_.max_message_size(); }

 private:
  SpscRing ring_;
  SpscProducer tx_;
};

// ---------------------------------------------------------------- queue

class QueueSource final : public LocalSource {
 public:
  QueueSource(MpmcQueue q, std::vector<MpmcConsumer> pool)
      : q_(std::move(q)), pool_(std::move(pool)) {
    for (uint32_t i = 0; i < pool_.size(); ++i)
      free_.push_back(static_cast<uint32_t>(pool_.size() - 1 - i));
  }
  Expected<Item> TryTake() noexcept override {
    if (free_.empty()) return RingErrc::kWouldBlock;
    const uint32_t i = free_.back();
    auto m = pool_[i].try_claim();
    if (!m) return MakeUnexpected(m.error());
    free_.pop_back();
    return Item{m->data, m->redelivered, i};
  }
  void Done(uint32_t token) noexcept override {
    (void)pool_[token].release();  // kRevoked only if we were judged dead: nothing to do
    free_.push_back(token);
  }
  uint64_t held() const noexcept override { return pool_.size() - free_.size(); }
  uint64_t max_message_size() const noexcept override { return q_.max_message_size(); }

 private:
  MpmcQueue q_;
  std::vector<MpmcConsumer> pool_;
  std::vector<uint32_t> free_;
};

class QueueSink final : public LocalSink {
 public:
  QueueSink(MpmcQueue q, MpmcProducer tx) : q_(std::move(q)), tx_(std::move(tx)) {}
  Expected<void> TryPut(std::span<const std::byte> data, bool redelivered) noexcept override {
    auto s = tx_.try_claim(data.size());
    if (!s) return MakeUnexpected(s.error());
    if (!data.empty()) std::memcpy(s->data(), data.data(), data.size());
    return redelivered ? tx_.publish_redelivered(data.size()) : tx_.publish();
  }
  void Flush() noexcept override {}
  void Close() noexcept override {}
  uint64_t max_message_size() const noexcept override { return q_.max_message_size(); }

 private:
  MpmcQueue q_;
  MpmcProducer tx_;
};

Expected<Topic> OpenTopic(const std::string& name, const LocalOptions& o) {
  auto r = Topic::Attach(name);
  if (r) return r;
  TopicOptions to;
  to.capacity = o.topic_capacity;
  to.unlink = UnlinkPolicy::kKeep;
  auto c = Topic::Create(name, to);
  if (!c && c.error() == std::errc::file_exists) return Topic::Attach(name);
  return c;
}

// Importing side of a topic: the publisher of the local topic.
class TopicSink final : public LocalSink {
 public:
  TopicSink(Topic t, TopicPublisher pub) : topic_(std::move(t)), pub_(std::move(pub)) {}
  Expected<void> TryPut(std::span<const std::byte> data, bool) noexcept override {
    auto s = pub_.try_loan(data.size());
    if (!s) return MakeUnexpected(s.error());
    if (!data.empty()) std::memcpy(s->data(), data.data(), data.size());
    auto seq = pub_.publish();
    if (!seq) return MakeUnexpected(seq.error());
    return {};
  }
  void Flush() noexcept override {}
  void Close() noexcept override { pub_.close(); }
  uint64_t max_message_size() const noexcept override { return topic_.max_message_size(); }

 private:
  Topic topic_;
  TopicPublisher pub_;
};

}  // namespace

Expected<std::unique_ptr<LocalTopicSource>> LocalTopicSource::Open(const std::string& name,
                                                                   const LocalOptions& opts) {
  auto t = OpenTopic(name, opts);
  if (!t) return MakeUnexpected(t.error());
  auto s = t->Subscriber();
  if (!s) return MakeUnexpected(s.error());
  return std::unique_ptr<LocalTopicSource>(new LocalTopicSource(std::move(*t), std::move(*s)));
}

Expected<std::unique_ptr<LocalSource>> LocalSource::Open(Kind kind, const std::string& name,
                                                         const LocalOptions& opts) {
  if (kind == Kind::kRing) {
    auto ring = OpenRing(name, opts);
    if (!ring) return MakeUnexpected(ring.error());
    auto rx = ring->Consumer();
    if (!rx) return MakeUnexpected(rx.error());
    return std::unique_ptr<LocalSource>(new RingSource(std::move(*ring), std::move(*rx)));
  }
  auto q = OpenQueue(name, opts);
  if (!q) return MakeUnexpected(q.error());
  // A previous bridge killed while holding messages: orphan them now, so they are
  // redelivered (flagged) at once instead of after the first recovery interval.
  q->RecoverDead();
  std::vector<MpmcConsumer> pool;
  for (uint32_t i = 0; i < opts.queue_handles; ++i) {
    auto c = q->Consumer();
    if (!c) return MakeUnexpected(c.error());
    pool.push_back(std::move(*c));
  }
  return std::unique_ptr<LocalSource>(new QueueSource(std::move(*q), std::move(pool)));
}

Expected<std::unique_ptr<LocalSink>> LocalSink::Open(Kind kind, const std::string& name,
                                                     const LocalOptions& opts) {
  if (kind == Kind::kTopic) {
    auto t = OpenTopic(name, opts);
    if (!t) return MakeUnexpected(t.error());
    auto pub = t->Publisher();
    if (!pub) return MakeUnexpected(pub.error());
    return std::unique_ptr<LocalSink>(new TopicSink(std::move(*t), std::move(*pub)));
  }
  if (kind == Kind::kRing) {
    auto ring = OpenRing(name, opts);
    if (!ring) return MakeUnexpected(ring.error());
    auto tx = ring->Producer();
    if (!tx) return MakeUnexpected(tx.error());
    return std::unique_ptr<LocalSink>(new RingSink(std::move(*ring), std::move(*tx)));
  }
  auto q = OpenQueue(name, opts);
  if (!q) return MakeUnexpected(q.error());
  q->RecoverDead();
  auto tx = q->Producer();
  if (!tx) return MakeUnexpected(tx.error());
  return std::unique_ptr<LocalSink>(new QueueSink(std::move(*q), std::move(*tx)));
}

}  // namespace shmlink::bridge
