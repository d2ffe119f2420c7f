// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The exporting half: one ROUTER socket, one LocalSource, per-importer sessions.
//
// Every message taken from the source gets a per-session sequence number and stays
// "in flight" (held unconsumed in the source, its span still valid in shm) until the
// importer acknowledges it, which it does only after committing it locally. Lost ZeroMQ
// messages (a connection dropped and re-established) are repaired by go-back-N: the
// importer NACKs the first missing sequence, or reports itself idle behind our last send,
// and we resend from there; the importer drops sequences it already has. An importer that
// goes silent for peer_timeout is retired: its in-flight messages become orphans, resent
// to the next ready importer (queue: flagged redelivered).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <vector>

#include "bridge/bridge.h"
#include "bridge/log.h"

#include <shmlink/handshake.h>
#include <shmlink/ring_error.h>

namespace shmlink::bridge {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

struct InFlight {
  uint64_t seq = 0;
  std::span<const std::byte> data;
  uint32_t flags = 0;         // as sent (source flag, or redelivered after a lost peer)
  uint32_t source_flags = 0;  // as taken from the source
  uint32_t token = 0;
  uint64_t session = 0;  // of the last session it was sent in (orphans: the retired one)
};

struct Peer {
  std::string rid;
  std::string addr;
  bool ready = false;
  std::optional<transport::Handshake> hs;
  uint64_t session = 0;
  uint64_t window_messages = 0;
  uint64_t window_bytes = 0;
  uint64_t next_seq = 1;
  std::deque<InFlight> inflight;
  uint64_t inflight_bytes = 0;
  uint64_t resend_from = 0;  // > 0: resend in-flight messages from this sequence
  Clock::time_point last_rx{}, last_tx{}, last_data_tx{}, blocked_until{}, last_end_tx{};
};

class Exporter {
 public:
  Exporter(const BridgeOptions& o, const std::atomic<bool>& stop) : o_(o), stop_(stop) {}
  int Run();

 private:
  void Receive();
  void OnMessage(const std::string& rid, const std::string& addr, std::span<const std::byte> m);
  void OnHello(const std::string& rid, const std::string& addr, const WireHeader& h,
               std::span<const std::byte> body);
  void OnAck(Peer& p, const WireHeader& h, Clock::time_point now);
  void Pump(Clock::time_point now);
  void PumpTopic(Clock::time_point now);
  bool PumpPeer(Peer& p, Clock::time_point now);
  bool SendBatch(Peer& p, size_t first, size_t n, Clock::time_point now);
  void Timers(Clock::time_point now);
  void Retire(Peer& p, const char* why);
  void Resume(uint64_t session, uint64_t seq);
  bool SendControl(const std::string& rid, MsgType t, uint64_t a, uint64_t b,
                   std::span<const std::byte> body = {});
  bool SendRaw(const std::string& rid, zmq_msg_t* m);
  void Welcome(Peer& p);
  void Malformed(const std::string& addr, const char* what);
  bool Credit(const Peer& p) const {
    return p.inflight.size() < p.window_messages && p.inflight_bytes < p.window_bytes;
  }

  const BridgeOptions& o_;
  const std::atomic<bool>& stop_;
  Net net_;
  std::unique_ptr<LocalSource> source_;      // ring, queue
  std::unique_ptr<LocalTopicSource> topic_;  // topic
  uint64_t topic_lost_here_ = 0, topic_dropped_ = 0;
  Clock::time_point last_topic_log_{};
  bool topic_closed_ = false;  // the publisher closed the topic and this bridge read it all
  uint64_t topic_next_ = 0;    // the topic sequence after the last one read
  std::map<std::string, Peer> peers_;
  std::deque<InFlight> orphans_;  // taken, owned by no session: resent first
  uint64_t instance_ = 0;
  uint64_t next_session_ = 1;
  uint64_t round_ = 0;
  bool source_closed_ = false;
  bool end_acked_ = false;
  uint64_t sent_ = 0, acked_ = 0, resent_ = 0, malformed_ = 0;
  Clock::time_point last_malformed_log_{}, last_stats_{};
  std::vector<InFlight> gather_;
};

int Exporter::Run() {
  instance_ = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}() ^ ::getpid();
  if (o_.kind == Kind::kTopic) {
    auto t = LocalTopicSource::Open(o_.name, o_.local);
    if (!t) {
      Log(LogLevel::kError, "cannot open local topic %s: %s", o_.name.c_str(),
          t.error().message().c_str());
      return 1;
    }
    topic_ = std::move(*t);
  } else {
    auto src = LocalSource::Open(o_.kind, o_.name, o_.local);
    if (!src) {
      Log(LogLevel::kError, "cannot open local %s %s: %s", std::string(KindName(o_.kind)).c_str(),
          o_.name.c_str(), src.error().message().c_str());
      return 1;
    }
    source_ = std::move(*src);
  }
  NetOptions net = o_.net;
  net.max_msg_size = 64 << 10;  // importers send only small control messages
  if (auto r = net_.Bind(o_.endpoint, net); !r) {
    Log(LogLevel::kError, "cannot bind %s: %s", o_.endpoint.c_str(), r.error().message().c_str());
    return 2;
  }
  Log(LogLevel::kInfo, "exporting %s %s on %s (auth %s)", std::string(KindName(o_.kind)).c_str(),
      o_.name.c_str(), o_.endpoint.c_str(), std::string(AuthModeName(o_.net.auth)).c_str());

  int idle_rounds = 0;
  while (!stop_.load(std::memory_order_relaxed)) {  // relaxed: a flag polled each round
    zmq_pollitem_t items[3] = {{net_.socket(), 0, ZMQ_POLLIN, 0},
                               {net_.monitor(), 0, ZMQ_POLLIN, 0},
                               {net_.zap(), 0, ZMQ_POLLIN, 0}};
    // Busy: poll without waiting. Idle: sleep in zmq_poll, 1 ms at most, since the local
    // source has no descriptor to wait on (bounded latency for the first message).
    const long timeout = idle_rounds < 64 ? 0 : 1;
    zmq_poll(items, net_.zap() != nullptr ? 3 : 2, timeout);
    const uint64_t before = sent_ + acked_;
    if (items[2].revents & ZMQ_POLLIN) net_.DrainZap();
    if (items[1].revents & ZMQ_POLLIN) net_.DrainMonitor();
    if (items[0].revents & ZMQ_POLLIN) Receive();
    const auto now = Clock::now();
    if (topic_) {
      PumpTopic(now);
    } else {
      Pump(now);
    }
    Timers(now);
    idle_rounds = (sent_ + acked_ != before) ? 0 : idle_rounds + 1;
    if (end_acked_) {
      Log(LogLevel::kInfo, "ring %s ended and every message was acknowledged: exiting",
          o_.name.c_str());
      return 0;
    }
  }
  uint64_t held = source_ ? source_->held() : 0;
  Log(LogLevel::kInfo,
      "stopping: sent %llu, acknowledged %llu, resent %llu, %llu held unacknowledged",
      static_cast<unsigned long long>(sent_), static_cast<unsigned long long>(acked_),
      static_cast<unsigned long long>(resent_), static_cast<unsigned long long>(held));
  if (held > 0) {
    // Destroying the source would consume what it holds (ring release, queue release).
    // Leave without destructors instead: the queue redelivers the held messages (flagged)
    // and a restarted exporter re-reads the ring from its last release.
    std::fflush(nullptr);
    ::_exit(0);
  }
  return 0;
}

void Exporter::Receive() {
  for (int i = 0; i < 256; ++i) {
    zmq_msg_t rid, body;
    zmq_msg_init(&rid);
    if (zmq_msg_recv(&rid, net_.socket(), ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&rid);
      return;
    }
    std::string id(static_cast<const char*>(zmq_msg_data(&rid)), zmq_msg_size(&rid));
    zmq_msg_init(&body);
    bool ok = zmq_msg_more(&rid) && zmq_msg_recv(&body, net_.socket(), 0) >= 0;
    std::string addr = ok ? PeerAddress(&body) : "?";
    bool extra = false;
    while (ok && zmq_msg_more(&body)) {  // a bridge message is one frame: drain the rest
      extra = true;
      zmq_msg_close(&body);
      zmq_msg_init(&body);
      if (zmq_msg_recv(&body, net_.socket(), 0) < 0) break;
    }
    if (!ok || extra) {
      Malformed(addr, "multi-part message");
    } else {
      OnMessage(id, addr,
                std::span(static_cast<const std::byte*>(zmq_msg_data(&body)), zmq_msg_size(&body)));
    }
    zmq_msg_close(&rid);
    zmq_msg_close(&body);
  }
}

void Exporter::Malformed(const std::string& addr, const char* what) {
  ++malformed_;
  const auto now = Clock::now();
  if (malformed_ == 1 || now - last_malformed_log_ > std::chrono::seconds(5)) {
    Log(LogLevel::kWarn, "dropped malformed message from %s: %s (%llu so far)", addr.c_str(), what,
        static_cast<unsigned long long>(malformed_));
    last_malformed_log_ = now;
  }
}

void Exporter::OnMessage(const std::string& rid, const std::string& addr,
                         std::span<const std::byte> m) {
  auto h = DecodeHeader(m);
  if (!h) return Malformed(addr, "not a bridge message");
  const auto body = m.subspan(kWireHeaderSize);
  if (h->type == MsgType::kHello) return OnHello(rid, addr, *h, body);
  auto it = peers_.find(rid);
  if (it == peers_.end()) {
    if (h->type == MsgType::kAck || h->type == MsgType::kNack || h->type == MsgType::kHeartbeat ||
        h->type == MsgType::kAuth) {
      static constexpr std::string_view kWhy = "unknown session";
      SendControl(rid, MsgType::kReset, 0, 0, std::as_bytes(std::span(kWhy)));
      return;
    }
    return Malformed(addr, "unexpected message type");
  }
  Peer& p = it->second;
  const auto now = Clock::now();
  if (h->type == MsgType::kAuth) {
    if (!p.hs || p.ready) return Malformed(addr, "authentication message out of order");
    std::vector<transport::Bytes> out;
    auto r = p.hs->OnFrame(body, &out);
    for (auto& f : out) SendControl(rid, MsgType::kAuth, 0, 0, f);
    if (!r) {
      Log(LogLevel::kWarn, "refused peer %s: authentication failed (%s): wrong authkey?",
          addr.c_str(), r.error().message().c_str());
      peers_.erase(it);
      return;
    }
    p.last_rx = now;
    if (p.hs->done()) Welcome(p);
    return;
  }
  if (!p.ready) return Malformed(addr, "data before authentication");
  if (h->b != p.session) {
    static constexpr std::string_view kWhy = "stale session";
    SendControl(rid, MsgType::kReset, 0, 0, std::as_bytes(std::span(kWhy)));
    return;
  }
  p.last_rx = now;
  switch (h->type) {
    case MsgType::kAck:
      OnAck(p, *h, now);
      break;
    case MsgType::kNack:
      if (!p.inflight.empty() && h->a >= p.inflight.front().seq && h->a < p.next_seq) {
        p.resend_from = p.resend_from == 0 ? h->a : std::min(p.resend_from, h->a);
      }
      break;
    case MsgType::kHeartbeat:
      break;
    default:
      Malformed(addr, "unexpected message type");
      break;
  }
}

void Exporter::OnHello(const std::string& rid, const std::string& addr, const WireHeader& h,
                       std::span<const std::byte> body) {
  auto hello = DecodeHello(body);
  if (!hello) return Malformed(addr, "bad hello");
  if (hello->kind != o_.kind) {
    Log(LogLevel::kWarn, "refused peer %s: it imports a %s, this bridge exports a %s", addr.c_str(),
        std::string(KindName(hello->kind)).c_str(), std::string(KindName(o_.kind)).c_str());
    static constexpr std::string_view kWhy = "kind mismatch";
    SendControl(rid, MsgType::kReset, 0, 0, std::as_bytes(std::span(kWhy)));
    return;
  }
  if (o_.kind == Kind::kRing) {
    for (auto& [id, q] : peers_) {
      if (id != rid && q.ready) {
        Log(LogLevel::kWarn, "refused peer %s: ring %s already has an importer (%s)", addr.c_str(),
            o_.name.c_str(), q.addr.c_str());
        static constexpr std::string_view kWhy = "ring already imported";
        SendControl(rid, MsgType::kReset, 0, 0, std::as_bytes(std::span(kWhy)));
        return;
      }
    }
  }
  if (auto it = peers_.find(rid); it != peers_.end() && it->second.ready) {
    // A hello that does not give up the current session is stale: sent before it began
    // and delivered late (queued in a connection that looked alive during an outage).
    if (hello->resume_exporter != instance_ || hello->resume_session < it->second.session) {
      Log(LogLevel::kDebug, "ignored a stale hello from %s", addr.c_str());
      return;
    }
  }
  if (auto it = peers_.find(rid); it != peers_.end()) {
    Retire(it->second, "started a new session");
    peers_.erase(it);
  }
  if (hello->resume_exporter == instance_ && hello->resume_session != 0) {
    Resume(hello->resume_session, hello->resume_seq);
  }
  Peer& p = peers_[rid];
  p.rid = rid;
  p.addr = addr;
  p.window_messages = std::max<uint64_t>(1, h.b);
  p.window_bytes = hello->window_bytes;
  if (o_.kind == Kind::kRing) {
    // Hold at most half the source ring, so its writer keeps the other half.
    p.window_bytes = std::min(p.window_bytes, source_->max_message_size() + 8);
  }
  p.last_rx = p.last_tx = Clock::now();
  if (o_.net.auth == AuthMode::kCurve) {
    Welcome(p);  // libzmq already authenticated the connection (CURVE + ZAP)
    return;
  }
  auto hs = transport::Handshake::Create(transport::HandshakeRole::kServer, o_.net.authkey);
  if (!hs) return;
  p.hs.emplace(std::move(*hs));
  std::vector<transport::Bytes> out;
  if (!p.hs->Start(&out)) return;
  for (auto& f : out) SendControl(rid, MsgType::kAuth, 0, 0, f);
}

void Exporter::Welcome(Peer& p) {
  p.ready = true;
  p.session = next_session_++;
  p.next_seq = 1;
  SendControl(p.rid, MsgType::kWelcome, instance_, p.session);
  Log(LogLevel::kInfo, "peer %s connected (session %llu, window %llu messages / %llu bytes)",
      p.addr.c_str(), static_cast<unsigned long long>(p.session),
      static_cast<unsigned long long>(p.window_messages),
      static_cast<unsigned long long>(p.window_bytes));
}

void Exporter::OnAck(Peer& p, const WireHeader& h, Clock::time_point now) {
  if (h.a >= p.next_seq) return;  // acknowledges what we never sent: ignore
  while (!p.inflight.empty() && p.inflight.front().seq <= h.a) {
    const InFlight& f = p.inflight.front();
    p.inflight_bytes -= f.data.size();
    source_->Done(f.token);
    p.inflight.pop_front();
    ++acked_;
  }
  if (p.resend_from != 0 && p.resend_from <= h.a) p.resend_from = h.a + 1;
  if (p.inflight.empty()) p.resend_from = 0;
  if (h.flags & 2) end_acked_ = source_closed_;
  // Idle importer behind our last send, and nothing sent for a while: a batch was lost
  // (connection dropped) after the last one it got. Go back to its first missing one.
  if ((h.flags & 1) && !p.inflight.empty() &&
      now - p.last_data_tx > milliseconds(2 * o_.heartbeat_ms)) {
    p.resend_from = p.inflight.front().seq;
  }
}

bool Exporter::SendRaw(const std::string& rid, zmq_msg_t* m) {
  if (zmq_send(net_.socket(), rid.data(), rid.size(), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
    zmq_msg_close(m);
    return false;  // EHOSTUNREACH (peer not connected) or EAGAIN (high-water mark)
  }
  if (zmq_msg_send(m, net_.socket(), ZMQ_DONTWAIT) < 0) {
    zmq_msg_close(m);
    return false;
  }
  return true;
}

bool Exporter::SendControl(const std::string& rid, MsgType t, uint64_t a, uint64_t b,
                           std::span<const std::byte> body) {
  zmq_msg_t m;
  zmq_msg_init_size(&m, kWireHeaderSize + body.size());
  auto* p = static_cast<std::byte*>(zmq_msg_data(&m));
  EncodeHeader(WireHeader{t, 0, 0, a, b}, p);
  if (!body.empty()) std::memcpy(p + kWireHeaderSize, body.data(), body.size());
  const bool ok = SendRaw(rid, &m);
  if (ok) {
    if (auto it = peers_.find(rid); it != peers_.end()) it->second.last_tx = Clock::now();
  }
  return ok;
}

// Encodes p.inflight[first, first+n) into one ZeroMQ message: the one copy on this side,
// from the shm mapping into the message buffer (libzmq then writes large messages to the
// socket from that buffer without another copy).
bool Exporter::SendBatch(Peer& p, size_t first, size_t n, Clock::time_point now) {
  size_t total = kWireHeaderSize;
  for (size_t i = first; i < first + n; ++i) total += kRecordHeaderSize + p.inflight[i].data.size();
  zmq_msg_t m;
  if (zmq_msg_init_size(&m, total) != 0) return false;
  auto* out = static_cast<std::byte*>(zmq_msg_data(&m));
  EncodeHeader(
      WireHeader{MsgType::kData, 0, static_cast<uint16_t>(n), p.inflight[first].seq, p.session},
      out);
  size_t off = kWireHeaderSize;
  for (size_t i = first; i < first + n; ++i) {
    off += EncodeRecord(p.inflight[i].data, p.inflight[i].flags, out + off);
  }
  if (!SendRaw(p.rid, &m)) {
    p.blocked_until = now + milliseconds(5);
    return false;
  }
  p.last_tx = p.last_data_tx = now;
  return true;
}

bool Exporter::PumpPeer(Peer& p, Clock::time_point now) {
  bool did = false;
  // 1. Go-back-N: resend in-flight messages from resend_from, same sequences.
  if (p.resend_from != 0) {
    size_t i = 0;
    while (i < p.inflight.size() && p.inflight[i].seq < p.resend_from) ++i;
    while (i < p.inflight.size()) {
      size_t n = 0, bytes = 0;
      while (i + n < p.inflight.size() && n < o_.batch_records && n < 65535 &&
             (n == 0 || bytes + p.inflight[i + n].data.size() <= o_.batch_bytes)) {
        bytes += p.inflight[i + n].data.size();
        ++n;
      }
      if (!SendBatch(p, i, n, now)) return did;
      resent_ += n;
      i += n;
      did = true;
    }
    p.resend_from = 0;
  }
  // 2. Orphans of retired sessions, then new messages, while the importer gives credit.
  while (Credit(p) && !stop_.load(std::memory_order_relaxed)) {
    const size_t first = p.inflight.size();
    size_t bytes = 0;
    while (Credit(p) && p.inflight.size() - first < std::min<uint64_t>(o_.batch_records, 65535) &&
           bytes < o_.batch_bytes) {
      InFlight f;
      if (!orphans_.empty()) {
        f = orphans_.front();
        orphans_.pop_front();
      } else {
        if (source_closed_) break;
        auto it = source_->TryTake();
        if (!it) {
          if (it.error() == make_error_code(RingErrc::kClosed)) {
            source_closed_ = true;
            Log(LogLevel::kInfo, "local writer of ring %s closed it", o_.name.c_str());
          } else if (it.error() != make_error_code(RingErrc::kWouldBlock)) {
            Log(LogLevel::kError, "reading local %s %s: %s", std::string(KindName(o_.kind)).c_str(),
                o_.name.c_str(), it.error().message().c_str());
          }
          break;
        }
        f.data = it->data;
        f.token = it->token;
        f.flags = f.source_flags = it->redelivered ? kRecordRedelivered : 0;
      }
      f.seq = p.next_seq++;
      f.session = p.session;
      bytes += f.data.size();
      p.inflight_bytes += f.data.size();
      p.inflight.push_back(f);
    }
    const size_t n = p.inflight.size() - first;
    if (n == 0) break;
    sent_ += n;
    did = true;
    if (!SendBatch(p, first, n, now)) break;  // stays in flight; NACK / idle ack resends
  }
  return did;
}

void Exporter::Pump(Clock::time_point now) {
  // Importers are served in turn, starting one further each round, so none starves.
  std::vector<Peer*> ready;
  for (auto& [rid, p] : peers_) {
    if (p.ready) ready.push_back(&p);
  }
  if (ready.empty()) return;
  ++round_;
  for (size_t k = 0; k < ready.size(); ++k) {
    Peer& p = *ready[(round_ + k) % ready.size()];
    if (now < p.blocked_until) continue;
    PumpPeer(p, now);
    // Ring: every message was acknowledged after its writer closed it: tell the importer.
    if (source_closed_ && o_.kind == Kind::kRing && p.inflight.empty() && orphans_.empty() &&
        now - p.last_end_tx > milliseconds(o_.heartbeat_ms)) {
      SendControl(p.rid, MsgType::kEnd, p.next_seq, p.session);
      p.last_end_tx = now;
    }
  }
}

// The importer of `session` (same process, new session) committed everything up to `seq`:
// those orphans are acknowledged now; the rest were never delivered to it, so they lose
// the redelivered flag this bridge added when it retired the session.
void Exporter::Resume(uint64_t session, uint64_t seq) {
  size_t done = 0, kept = 0;
  std::deque<InFlight> rest;
  for (auto& f : orphans_) {
    if (f.session != session) {
      rest.push_back(f);
    } else if (f.seq <= seq) {
      source_->Done(f.token);
      ++acked_;
      ++done;
    } else {
      f.flags = f.source_flags;
      rest.push_back(f);
      ++kept;
    }
  }
  orphans_.swap(rest);
  if (done + kept > 0) {
    Log(LogLevel::kInfo,
        "importer resumed session %llu: %zu messages it had committed acknowledged, %zu resent",
        static_cast<unsigned long long>(session), done, kept);
  }
}

// Topic: fan each batch out to every ready importer, no acknowledgements. Messages are read
// only while at least one importer is ready (a kBlock topic then holds its publisher back
// until one is); each is copied into the batch and released at once. A batch is one
// buffer shared by every peer's ZeroMQ message (zmq_msg_copy: reference counted). A peer
// whose ZeroMQ queue is full misses the batch; its importer counts the gap as a loss.
void Exporter::PumpTopic(Clock::time_point now) {
  std::vector<Peer*> ready;
  for (auto& [rid, p] : peers_) {
    if (p.ready) ready.push_back(&p);
  }
  if (ready.empty()) return;
  if (topic_closed_) {
    // Everything was read and sent before this: each importer gets the end (after its last
    // batch on the same connection), repeated each heartbeat until it closes its topic and
    // leaves. An importer that connects later gets it too. A message missing below the end
    // is a counted loss on the importing host.
    for (Peer* p : ready) {
      if (now - p->last_end_tx > milliseconds(o_.heartbeat_ms)) {
        SendControl(p->rid, MsgType::kEnd, topic_next_, p->session);
        p->last_end_tx = now;
      }
    }
    return;
  }
  for (int round = 0; round < 16; ++round) {
    auto* buf = new std::vector<std::byte>(kWireHeaderSize);
    buf->reserve(kWireHeaderSize + o_.batch_bytes + 64);
    uint64_t first = 0;
    uint32_t n = 0;
    while (n < std::min<uint32_t>(o_.batch_records, 65535) &&
           buf->size() < kWireHeaderSize + o_.batch_bytes) {
      auto s = topic_->TryReceive();
      if (!s) {
        const auto e = s.error();
        if (e == make_error_code(RingErrc::kOverrun)) {
          topic_lost_here_ += topic_->last_loss();
          if (now - last_topic_log_ > std::chrono::seconds(1)) {
            Log(LogLevel::kWarn,
                "the local publisher of topic %s lapped this bridge: %llu lost so far",
                o_.name.c_str(), static_cast<unsigned long long>(topic_lost_here_));
            last_topic_log_ = now;
          }
          if (n == 0) continue;
        } else if (e == make_error_code(RingErrc::kClosed) && !topic_closed_) {
          Log(LogLevel::kInfo,
              "the local publisher closed topic %s: telling importers the stream ended at %llu",
              o_.name.c_str(), static_cast<unsigned long long>(topic_next_));
          topic_closed_ = true;
        } else if (e != make_error_code(RingErrc::kWouldBlock) &&
                   e != make_error_code(RingErrc::kPeerDead) &&
                   e != make_error_code(RingErrc::kClosed)) {
          Log(LogLevel::kError, "reading local topic %s: %s", o_.name.c_str(), e.message().c_str());
        }
        break;
      }
      if (n > 0 && s->seq != first + n) break;  // a gap: the next batch starts there
      if (n == 0) first = s->seq;
      topic_next_ = s->seq + 1;
      const size_t off = buf->size();
      buf->resize(off + kRecordHeaderSize + s->data.size());
      EncodeRecord(s->data, 0, buf->data() + off);
      if (!topic_->Release()) {  // overwritten while we copied it: drop the torn copy
        buf->resize(off);
        ++topic_lost_here_;
        break;
      }
      ++n;
    }
    if (n == 0) {
      delete buf;
      return;
    }
    // b = this exporter's instance: the same batch goes to every session.
    EncodeHeader(WireHeader{MsgType::kData, 0, static_cast<uint16_t>(n), first, instance_},
                 buf->data());
    zmq_msg_t m;
    zmq_msg_init_data(
        &m, buf->data(), buf->size(),
        [](void*, void* hint) { delete static_cast<std::vector<std::byte>*>(hint); }, buf);
    for (Peer* p : ready) {
      zmq_msg_t c;
      zmq_msg_init(&c);
      zmq_msg_copy(&c, &m);
      if (SendRaw(p->rid, &c)) {
        p->last_tx = p->last_data_tx = now;
      } else {
        topic_dropped_ += n;
        if (now - last_topic_log_ > std::chrono::seconds(1)) {
          Log(LogLevel::kWarn,
              "peer %s does not keep up with topic %s: %llu messages dropped so far",
              p->addr.c_str(), o_.name.c_str(), static_cast<unsigned long long>(topic_dropped_));
          last_topic_log_ = now;
        }
      }
    }
    zmq_msg_close(&m);
    sent_ += n;
  }
}

void Exporter::Retire(Peer& p, const char* why) {
  if (!p.inflight.empty()) {
    Log(LogLevel::kWarn, "peer %s %s: %zu messages in flight will be resent%s", p.addr.c_str(), why,
        p.inflight.size(), o_.kind == Kind::kQueue ? " (flagged redelivered)" : "");
  }
  // Orphans are sent before anything new is taken, so they are all older than these
  // messages: appending keeps the ring's order.
  for (auto& f : p.inflight) {
    if (o_.kind == Kind::kQueue) f.flags |= kRecordRedelivered;
    orphans_.push_back(f);
  }
  p.inflight.clear();
  p.inflight_bytes = 0;
}

void Exporter::Timers(Clock::time_point now) {
  if (LogEnabled(LogLevel::kDebug) && now - last_stats_ > std::chrono::seconds(1)) {
    last_stats_ = now;
    size_t inflight = 0;
    for (auto& [id, p] : peers_) inflight += p.inflight.size();
    Log(LogLevel::kDebug,
        "counters: sent %llu, acknowledged %llu, resent %llu, in flight %zu, orphans %zu, held "
        "%llu, peers %zu, malformed %llu",
        static_cast<unsigned long long>(sent_), static_cast<unsigned long long>(acked_),
        static_cast<unsigned long long>(resent_), inflight, orphans_.size(),
        static_cast<unsigned long long>(source_ ? source_->held() : 0), peers_.size(),
        static_cast<unsigned long long>(malformed_));
  }
  for (auto it = peers_.begin(); it != peers_.end();) {
    Peer& p = it->second;
    if (now - p.last_rx > milliseconds(o_.peer_timeout_ms)) {
      if (p.ready) {
        Log(LogLevel::kWarn, "peer %s gone (nothing heard for %d ms)", p.addr.c_str(),
            o_.peer_timeout_ms);
        Retire(p, "gone");
      }
      it = peers_.erase(it);
      continue;
    }
    if (p.ready && now - p.last_tx > milliseconds(o_.heartbeat_ms)) {
      SendControl(p.rid, MsgType::kHeartbeat, 0, p.session);
    }
    ++it;
  }
  if (source_closed_ && o_.kind == Kind::kRing && peers_.empty() && orphans_.empty() && source_ &&
      source_->held() == 0 && acked_ > 0) {
    end_acked_ = true;  // the importer left after everything was acknowledged
  }
}

}  // namespace

int RunExporter(const BridgeOptions& o, const std::atomic<bool>& stop) {
  Exporter e(o, stop);
  return e.Run();
}

}  // namespace shmlink::bridge
