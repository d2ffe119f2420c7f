// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The importing half: one DEALER socket connected to an exporter, one LocalSink.
//
// States: not ready (HELLO sent every 500 ms until welcomed; HMAC mode: the challenge runs
// in between) -> ready (data flows). Records are delivered to the sink strictly in
// sequence; a batch that skips ahead is dropped and NACKed, one already seen is dropped
// (go-back-N, see exporter.cc). The importer acknowledges a sequence only after the sink
// has committed it, which is what carries back-pressure to the exporter: no credit is
// returned while the local ring/queue is full.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "bridge/bridge.h"
#include "bridge/log.h"

#include <shmlink/handshake.h>
#include <shmlink/ring_error.h>

namespace shmlink::bridge {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// One received kData message, delivered record by record (it may wait for local space).
struct Batch {
  zmq_msg_t msg;
  RecordReader reader{{}, 0};
  uint64_t next_seq = 0;  // sequence of the record reader.Next() yields
  std::optional<Record> current;
  Batch() { zmq_msg_init(&msg); }
  ~Batch() { zmq_msg_close(&msg); }
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;
};

class Importer {
 public:
  Importer(const BridgeOptions& o, const std::atomic<bool>& stop) : o_(o), stop_(stop) {}
  int Run();

 private:
  void Receive(Clock::time_point now);
  void OnMessage(zmq_msg_t* m, Clock::time_point now);
  void Deliver();
  void Send(MsgType t, uint8_t flags, uint64_t a, uint64_t b, std::span<const std::byte> body = {});
  void SendHello(Clock::time_point now);
  void LoseSession();

  const BridgeOptions& o_;
  const std::atomic<bool>& stop_;
  Net net_;
  std::unique_ptr<LocalSink> sink_;
  std::string id_;
  bool ready_ = false;
  bool ever_ready_ = false;
  std::optional<transport::Handshake> hs_;
  uint64_t exporter_ = 0;
  uint64_t session_ = 0;
  uint64_t delivered_ = 0;             // last sequence committed locally (this session)
  uint64_t acked_ = 0;                 // last sequence acknowledged
  uint64_t recv_next_ = 1;             // sequence after the last record accepted into pending_
  uint64_t end_seq_ = 0;               // ring: the exporter's end-of-stream marker (0: none yet)
  std::optional<uint64_t> topic_end_;  // topic: the sequence after the last one published
  std::deque<std::unique_ptr<Batch>> pending_;
  Clock::time_point last_rx_{}, last_tx_{}, last_hello_{}, last_auth_{}, last_nack_{};
  uint64_t last_nack_seq_ = 0;
  uint64_t topic_lost_ = 0;
  bool topic_base_ = false;
  Clock::time_point last_loss_log_{};
  uint64_t total_delivered_ = 0, redelivered_ = 0, dropped_too_large_ = 0, malformed_ = 0;
  int exit_code_ = -1;
  struct {
    uint64_t exporter = 0, session = 0, seq = 0;
  } resume_;
};

int Importer::Run() {
  auto sink = LocalSink::Open(o_.kind, o_.name, o_.local);
  if (!sink) {
    Log(LogLevel::kError, "cannot open local %s %s: %s", std::string(KindName(o_.kind)).c_str(),
        o_.name.c_str(), sink.error().message().c_str());
    return 1;
  }
  sink_ = std::move(*sink);
  uint64_t rnd = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  id_.assign(reinterpret_cast<const char*>(&rnd), sizeof rnd);
  id_.insert(0, 1, 'I');  // routing ids must not start with a zero byte
  NetOptions net = o_.net;
  // Largest legitimate batch: batch limit, or one record of the largest local message.
  net.max_msg_size = static_cast<int64_t>(
      std::max<uint64_t>(o_.batch_bytes, sink_->max_message_size()) * 2 + 65536);
  if (auto r = net_.Connect(o_.endpoint, id_, net); !r) {
    Log(LogLevel::kError, "cannot connect to %s: %s", o_.endpoint.c_str(),
        r.error().message().c_str());
    return 2;
  }
  Log(LogLevel::kInfo, "importing %s %s from %s (auth %s)", std::string(KindName(o_.kind)).c_str(),
      o_.name.c_str(), o_.endpoint.c_str(), std::string(AuthModeName(o_.net.auth)).c_str());
  last_rx_ = Clock::now();
  while (!stop_.load(std::memory_order_relaxed) && exit_code_ < 0) {  // relaxed: polled flag
    zmq_pollitem_t items[2] = {{net_.socket(), 0, ZMQ_POLLIN, 0},
                               {net_.monitor(), 0, ZMQ_POLLIN, 0}};
    // Waiting for local space: retry soon. Otherwise sleep until traffic or a timer.
    zmq_poll(items, 2, pending_.empty() ? std::min(o_.heartbeat_ms, 100) : 1);
    const auto now = Clock::now();
    if (items[1].revents & ZMQ_POLLIN) net_.DrainMonitor();
    if (o_.net.auth == AuthMode::kCurve && net_.failures_in_a_row() >= 3) {
      Log(LogLevel::kError,
          "the exporter at %s refused %d CURVE handshakes in a row: wrong authkey (or not a "
          "shmlink-bridge there); giving up",
          o_.endpoint.c_str(), net_.failures_in_a_row());
      return 3;
    }
    if (items[0].revents & ZMQ_POLLIN) Receive(now);
    Deliver();
    if (ready_ && delivered_ > acked_) {
      Send(MsgType::kAck, 0, delivered_, session_);
      acked_ = delivered_;
    }
    const bool ring_ended = end_seq_ != 0 && delivered_ + 1 == end_seq_;
    if (ready_ && pending_.empty() && (ring_ended || topic_end_)) {
      if (topic_end_ && recv_next_ != 0 && *topic_end_ > recv_next_) {
        topic_lost_ += *topic_end_ - recv_next_;  // the tail dropped for this importer
      }
      sink_->Flush();
      sink_->Close();
      Send(MsgType::kAck, 2, delivered_, session_);
      Log(LogLevel::kInfo, "%s %s: the exporter's %s closed it; closed it here (%llu messages)",
          std::string(KindName(o_.kind)).c_str(), o_.name.c_str(),
          topic_end_ ? "publisher" : "writer", static_cast<unsigned long long>(total_delivered_));
      int linger = 1000;  // let the final acknowledgement leave
      zmq_setsockopt(net_.socket(), ZMQ_LINGER, &linger, sizeof linger);
      exit_code_ = 0;  // leaves the loop; the totals follow
      break;
    }
    // Not welcomed: say hello again unless a challenge is in progress.
    if (!ready_ && now - std::max(last_hello_, last_auth_) > milliseconds(500)) SendHello(now);
    if (ready_ && now - last_tx_ > milliseconds(o_.heartbeat_ms)) {
      // Heartbeat = acknowledgement, flagged idle when nothing waits for local space.
      Send(MsgType::kAck, pending_.empty() ? 1 : 0, delivered_, session_);
    }
    if (ready_ && now - last_rx_ > milliseconds(o_.peer_timeout_ms)) {
      Log(LogLevel::kWarn, "exporter at %s gone (nothing heard for %d ms); reconnecting",
          o_.endpoint.c_str(), o_.peer_timeout_ms);
      LoseSession();
    }
  }
  Log(LogLevel::kInfo,
      "stopping: delivered %llu (%llu flagged redelivered), dropped %llu too large, %llu "
      "topic messages lost",
      static_cast<unsigned long long>(total_delivered_),
      static_cast<unsigned long long>(redelivered_),
      static_cast<unsigned long long>(dropped_too_large_),
      static_cast<unsigned long long>(topic_lost_));
  return exit_code_ < 0 ? 0 : exit_code_;
}

void Importer::LoseSession() {
  if (ready_) {
    // Everything up to delivered_ is committed here: tell the exporter in the next hello,
    // so it neither resends nor flags what this process already has.
    resume_ = {exporter_, session_, delivered_};
  }
  ready_ = false;
  hs_.reset();
  pending_.clear();  // not acknowledged: the exporter resends it in the next session
  last_hello_ = last_auth_ = {};
}

void Importer::Send(MsgType t, uint8_t flags, uint64_t a, uint64_t b,
                    std::span<const std::byte> body) {
  zmq_msg_t m;
  zmq_msg_init_size(&m, kWireHeaderSize + body.size());
  auto* p = static_cast<std::byte*>(zmq_msg_data(&m));
  EncodeHeader(WireHeader{t, flags, 0, a, b}, p);
  if (!body.empty()) std::memcpy(p + kWireHeaderSize, body.data(), body.size());
  if (zmq_msg_send(&m, net_.socket(), ZMQ_DONTWAIT) < 0) {
    zmq_msg_close(&m);  // not connected (IMMEDIATE) or full: timers retry
    return;
  }
  last_tx_ = Clock::now();
}

void Importer::SendHello(Clock::time_point now) {
  last_hello_ = now;
  hs_.reset();
  std::byte body[kHelloBodySize];
  EncodeHello(HelloBody{o_.kind, o_.window_bytes, resume_.exporter, resume_.session, resume_.seq},
              body);
  Send(MsgType::kHello, 0, 0, o_.window_messages, body);
}

void Importer::Receive(Clock::time_point now) {
  for (int i = 0; i < 256 && exit_code_ < 0; ++i) {
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, net_.socket(), ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&m);
      return;
    }
    if (zmq_msg_more(&m)) {  // a bridge message is one frame
      ++malformed_;
      while (zmq_msg_more(&m)) {
        zmq_msg_close(&m);
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, net_.socket(), 0) < 0) break;
      }
      zmq_msg_close(&m);
      continue;
    }
    OnMessage(&m, now);
    zmq_msg_close(&m);
  }
}

void Importer::OnMessage(zmq_msg_t* m, Clock::time_point now) {
  const std::span<const std::byte> msg(static_cast<const std::byte*>(zmq_msg_data(m)),
                                       zmq_msg_size(m));
  auto h = DecodeHeader(msg);
  if (!h) {
    if (++malformed_ == 1) Log(LogLevel::kWarn, "dropped malformed message from the exporter");
    return;
  }
  const auto body = msg.subspan(kWireHeaderSize);
  switch (h->type) {
    case MsgType::kAuth: {
      if (ready_) return;
      if (!hs_) {
        auto hs = transport::Handshake::Create(transport::HandshakeRole::kClient, o_.net.authkey);
        if (!hs) return;
        hs_.emplace(std::move(*hs));
        std::vector<transport::Bytes> none;  // a client sends nothing first
        if (!hs_->Start(&none)) return;
      }
      std::vector<transport::Bytes> out;
      auto r = hs_->OnFrame(body, &out);
      for (auto& f : out) Send(MsgType::kAuth, 0, 0, 0, f);
      if (!r) {
        Log(LogLevel::kError, "authentication with the exporter at %s failed (%s): wrong authkey?",
            o_.endpoint.c_str(), r.error().message().c_str());
        exit_code_ = 3;
      }
      last_auth_ = now;
      return;
    }
    case MsgType::kWelcome: {
      if (ready_) return;
      if (o_.net.auth == AuthMode::kHmac && (!hs_ || !hs_->done())) {
        Log(LogLevel::kWarn, "ignored a welcome before authentication");
        return;
      }
      const bool restarted = ever_ready_ && exporter_ != h->a;
      ready_ = ever_ready_ = true;
      exporter_ = h->a;
      session_ = h->b;
      delivered_ = acked_ = 0;
      if (o_.kind != Kind::kTopic) {
        recv_next_ = 1;
      } else if (restarted || !topic_base_) {
        recv_next_ = 0;  // a new topic stream: its first batch sets the base
        topic_base_ = true;
      }  // else: same exporter, so what was published while we were away is a counted gap
      end_seq_ = 0;
      topic_end_.reset();
      pending_.clear();
      resume_ = {};
      last_rx_ = now;
      Log(LogLevel::kInfo, "connected to the exporter at %s (session %llu%s)", o_.endpoint.c_str(),
          static_cast<unsigned long long>(session_), restarted ? ", exporter restarted" : "");
      return;
    }
    case MsgType::kReset: {
      std::string why(reinterpret_cast<const char*>(body.data()), body.size());
      // Not ready: a late answer to traffic of the session already lost (debug only).
      Log(ready_ ? LogLevel::kInfo : LogLevel::kDebug, "exporter at %s asks for a new session: %s",
          o_.endpoint.c_str(), why.c_str());
      if (why == "kind mismatch") {
        Log(LogLevel::kError, "the exporter at %s does not export a %s", o_.endpoint.c_str(),
            std::string(KindName(o_.kind)).c_str());
        exit_code_ = 1;
      } else if (why == "ring already imported") {
        Log(LogLevel::kWarn, "the exporter at %s already has an importer for its ring; retrying",
            o_.endpoint.c_str());
      }
      LoseSession();
      return;
    }
    default:
      break;
  }
  const bool topic = o_.kind == Kind::kTopic;
  // A stale session's traffic. Topic data is shared by every session: it names the exporter.
  if (!ready_ || h->b != ((topic && h->type == MsgType::kData) ? exporter_ : session_)) return;
  last_rx_ = now;
  if (h->type == MsgType::kEnd) {
    if (o_.kind == Kind::kRing && h->a == recv_next_) end_seq_ = h->a;
    // Topic: every batch sent before the end arrived before it (one connection, in order).
    if (topic) topic_end_ = h->a;
    return;
  }
  if (h->type != MsgType::kData) return;  // heartbeat, or a type only importers send
  const uint64_t first = h->a;
  const uint64_t last = first + h->count - 1;
  if (last < first) return;
  if (topic) {
    // The topic's own sequence numbers: a jump is a counted loss (a lapped subscriber on
    // the exporting host, or a batch dropped for this importer), never silent.
    if (recv_next_ != 0 && last < recv_next_) return;
    if (recv_next_ != 0 && first > recv_next_) {
      topic_lost_ += first - recv_next_;
      if (now - last_loss_log_ > std::chrono::seconds(1)) {
        Log(LogLevel::kWarn, "topic %s: lost messages %llu..%llu (%llu lost in all)",
            o_.name.c_str(), static_cast<unsigned long long>(recv_next_),
            static_cast<unsigned long long>(first - 1),
            static_cast<unsigned long long>(topic_lost_));
        last_loss_log_ = now;
      }
    }
    if (recv_next_ == 0 || first > recv_next_) recv_next_ = first;
  }
  if (!topic && (first == 0 || last < recv_next_)) return;  // all seen already (a resend)
  if (!topic && first > recv_next_) {
    // A batch was lost (reconnect): ask for the first missing one, once per 50 ms.
    if (last_nack_seq_ != recv_next_ || now - last_nack_ > milliseconds(50)) {
      Send(MsgType::kNack, 0, recv_next_, session_);
      last_nack_seq_ = recv_next_;
      last_nack_ = now;
    }
    return;
  }
  if (!RecordReader::Validate(body, h->count, UINT32_MAX)) {
    if (++malformed_ == 1) Log(LogLevel::kWarn, "dropped malformed data from the exporter");
    return;
  }
  auto b = std::make_unique<Batch>();
  zmq_msg_move(&b->msg, m);
  const std::span<const std::byte> kept(static_cast<const std::byte*>(zmq_msg_data(&b->msg)),
                                        zmq_msg_size(&b->msg));
  b->reader = RecordReader(kept.subspan(kWireHeaderSize), h->count);
  b->next_seq = first;
  // Skip what an earlier copy of an overlapping batch delivered.
  while (b->next_seq < recv_next_) {
    (void)b->reader.Next();
    ++b->next_seq;
  }
  recv_next_ = last + 1;
  pending_.push_back(std::move(b));
}

void Importer::Deliver() {
  bool wrote = false;
  while (!pending_.empty()) {
    Batch& b = *pending_.front();
    for (;;) {
      if (!b.current) {
        auto r = b.reader.Next();
        if (!r) break;  // batch done
        b.current = *r;
      }
      auto put = sink_->TryPut(b.current->payload, b.current->flags & kRecordRedelivered);
      if (!put) {
        if (put.error() == make_error_code(RingErrc::kWouldBlock)) {
          if (wrote) sink_->Flush();
          return;  // local ring/queue full: no acknowledgement, no credit (back-pressure)
        }
        if (put.error() == make_error_code(RingErrc::kTooLarge)) {
          ++dropped_too_large_;
          Log(LogLevel::kError, "dropped a %zu-byte message: larger than local %s %s allows",
              b.current->payload.size(), std::string(KindName(o_.kind)).c_str(), o_.name.c_str());
        } else {
          Log(LogLevel::kError, "writing local %s %s: %s", std::string(KindName(o_.kind)).c_str(),
              o_.name.c_str(), put.error().message().c_str());
          exit_code_ = 1;
          return;
        }
      } else {
        wrote = true;
        ++total_delivered_;
        if (b.current->flags & kRecordRedelivered) ++redelivered_;
      }
      b.current.reset();
      delivered_ = b.next_seq++;
    }
    pending_.pop_front();
  }
  if (wrote) sink_->Flush();
}

}  // namespace

int RunImporter(const BridgeOptions& o, const std::atomic<bool>& stop) {
  Importer i(o, stop);
  return i.Run();
}

}  // namespace shmlink::bridge
