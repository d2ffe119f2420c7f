// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Upgrade protocol (after a successful handshake in which both challenges carried the
// shmlink marker and the server has enable_shm; the client follows the server's offer):
//
//   server -> client   "#SHMLINK-SEG#" via:u8 capacity:u64le name...   (+ SCM_RIGHTS fd
//                      when via == 0; via == 1: named segment, the name follows)
//                   or "#SHMLINK-NOSHM#"  (server could not create a segment)
//   client -> server   "#SHMLINK-OK#" token(16)   (token read from ring 0)
//                   or "#SHMLINK-NOSHM#"  (client could not map/validate: socket path)
//
// Ring 0 carries server -> client, ring 1 client -> server. Before sending the offer the
// server claims producer(0)/consumer(1) and commits the 16-byte random token as the first
// message of ring 0; the client claims consumer(0)/producer(1) and consumes the token, so
// echoing it proves the client mapped this very segment (not a same-named one elsewhere).
//
// Doorbell (fileno() on shm): a reader that arms adds kFdWaiterBias to its ring's
// data_event.waiters (a value no number of futex sleepers reaches). A sender that sees
// waiters >= kFdWaiterBias after a commit writes one byte to the socket. SYNC(doorbell):
// arm is a seq_cst RMW followed by a seq_cst re-check of the ring; the sender's commit
// publishes the message and ends with a seq_cst fence (spsc_ring.cc, SYNC(event-count)),
// followed by a seq_cst load of waiters (event_count.h's argument): either the sender sees
// the bias, or the reader's re-check sees the message. A reader that dies armed never
// disarms: the sender, at most once per kSocketCheckInterval while it rings, asks the
// kernel whether the reader still holds its role's lock, and takes a dead reader's bias
// off, so a dead reader costs no system call per commit (the socket may outlive it in a
// process that inherited it).
//
// Liveness: each side holds its two roles as holder locks (spsc_ring.h); the server also
// holds the segment's creator lock for the Connection's lifetime. A peer counts as dead
// only on the kernel's word (SpscRoleDied) or on the socket's end; a stale conn segment
// only when nobody holds any of its locks.
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <optional>

#include <shmlink/blocking_wait.h>
#include <shmlink/connection.h>
#include <shmlink/frame.h>
#include <shmlink/holder_lock.h>
#include <shmlink/log.h>
#include <shmlink/process_identity.h>
#include <shmlink/segment.h>
#include <shmlink/spsc_layout.h>
#include <shmlink/spsc_ring.h>

namespace shmlink::transport {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kUpgradeOffer = "#SHMLINK-SEG#";
constexpr std::string_view kUpgradeOk = "#SHMLINK-OK#";
constexpr std::string_view kUpgradeNo = "#SHMLINK-NOSHM#";
constexpr size_t kTokenSize = 16;
// Ring message header on the shm path (8 bytes, keeps payloads 8-aligned). A message
// that fits a ring record is one kMsgWhole record; a larger one is a kMsgFirst record
// (u64 total length, then data) followed by kMsgMore records, reassembled by the reader.
constexpr uint32_t kMsgWhole = 0x4c4f4857;  // "WHOL"
constexpr uint32_t kMsgFirst = 0x54535246;  // "FRST"
constexpr uint32_t kMsgMore = 0x45524f4d;   // "MORE"
// A descriptor passed with send_handle: the fd crossed the socket (SCM_RIGHTS) before this
// record was committed, so the reader finds it there when it meets the record.
constexpr uint32_t kMsgHandle = 0x4c444e48;  // "HNDL"
constexpr size_t kMsgHeader = 8;
constexpr uint32_t kFdWaiterBias = 1u << 20;
constexpr uint64_t kMinRingCapacity = 4096;
constexpr auto kSocketCheckInterval = std::chrono::milliseconds(10);

std::span<const std::byte> AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
bool StartsWith(std::span<const std::byte> b, std::string_view p) {
  return b.size() >= p.size() && std::memcmp(b.data(), p.data(), p.size()) == 0;
}

std::error_code Errno() { return {errno, std::system_category()}; }

// Maps ring errors to the transport's vocabulary (kCorrupt etc. stay in the ring category).
std::error_code MapRingError(std::error_code ec) {
  if (ec == make_error_code(RingErrc::kClosed)) return make_error_code(TransportErrc::kClosed);
  if (ec == make_error_code(RingErrc::kPeerDead)) return make_error_code(TransportErrc::kPeerDead);
  if (ec == make_error_code(RingErrc::kTimedOut)) return make_error_code(TransportErrc::kTimedOut);
  if (ec == make_error_code(RingErrc::kWouldBlock)) {
    return make_error_code(TransportErrc::kWouldBlock);
  }
  if (ec == make_error_code(RingErrc::kTooLarge)) return make_error_code(TransportErrc::kTooLarge);
  return ec;
}

// Milliseconds left until `deadline` for poll(): -1 = forever.
int PollMs(std::optional<Clock::time_point> deadline) {
  if (!deadline) return -1;
  auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(std::min<int64_t>(left, 1 << 30));
}

// A timeout too large for the clock (e.g. nanoseconds::max()) means forever, as in
// WaitOptions, instead of overflowing into the past.
std::optional<Clock::time_point> DeadlineFor(Timeout t) {
  if (t.count() < 0) return std::nullopt;
  const Clock::time_point d = internal::SaturatingAdd(Clock::now(), t);
  if (d == Clock::time_point::max()) return std::nullopt;
  return d;
}

// Writes all of `iov` (MSG_NOSIGNAL: EPIPE instead of SIGPIPE), optionally with one fd.
Expected<void> SendAll(int fd, iovec* iov, int iovcnt, int pass_fd = -1) {
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
  bool fd_pending = pass_fd >= 0;
  while (iovcnt > 0) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(iovcnt);
    if (fd_pending) {
      std::memset(cbuf, 0, sizeof(cbuf));
      msg.msg_control = cbuf;
      msg.msg_controllen = sizeof(cbuf);
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    }
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        pollfd p{fd, POLLOUT, 0};
        ::poll(&p, 1, -1);
        continue;
      }
      // The peer closed its end (or died): the same result the shm path reports.
      if (errno == EPIPE || errno == ECONNRESET) return TransportErrc::kClosed;
      return MakeUnexpected(Errno());
    }
    fd_pending = false;
    size_t left = static_cast<size_t>(n);
    while (iovcnt > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --iovcnt;
    }
    if (iovcnt > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return {};
}

Expected<void> SendFrame(int fd, std::span<const std::byte> payload, int pass_fd = -1) {
  std::byte hdr[kMaxFrameHeader];
  const size_t hlen = EncodeFrameHeader(payload.size(), hdr);
  iovec iov[2] = {{hdr, hlen}, {const_cast<std::byte*>(payload.data()), payload.size()}};
  return SendAll(fd, iov, payload.empty() ? 1 : 2, pass_fd);
}

void CloseFd(int& fd) noexcept {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

std::string RandomHex(size_t bytes) {
  std::vector<unsigned char> r(bytes);
  RAND_bytes(r.data(), static_cast<int>(r.size()));
  static const char* kHex = "0123456789abcdef";
  std::string s;
  for (unsigned char c : r) {
    s += kHex[c >> 4];
    s += kHex[c & 15];
  }
  return s;
}

}  // namespace

// ====================================================================== Connection::Impl

struct Connection::Impl {
  int fd = -1;
  int received_fd = -1;        // fd that arrived with SCM_RIGHTS during the upgrade
  bool setup_done = false;     // after it, fds arriving are passed handles:
  std::deque<int> handle_fds;  // received in order, taken by recv_handle
  bool tcp = false;
  ConnectionOptions options;
  PeerInfo peer;
  bool peer_is_shmlink = false;
  bool closed = false;
  bool eof = false;            // socket EOF seen
  pid_t creator = ::getpid();  // a forked child's copy must not end the parent's streams

  FrameParser parser{kHandshakeMaxFrame};
  ConnectionStats stats;

  // socket data path
  std::vector<std::byte> send_buf;
  bool reserved = false;
  bool peeked = false;

  // shm data path
  std::shared_ptr<Segment> segment;
  HolderLock creator_lock;  // server: the segment's kCreatorHolderSlot, while it is ours
  std::optional<SpscProducer> tx;
  std::optional<SpscConsumer> rx;
  SpscRegion tx_region, rx_region;
  bool armed = false;
  Clock::time_point next_reader_check{};  // doorbells: when to ask whether the reader lives
  bool big_reserved = false;              // reserve() of a message larger than a ring record
  std::vector<std::byte> big_tx;          // its bytes until commit()
  std::vector<std::byte> big_rx;          // a large message being reassembled / peeked
  uint64_t big_total = 0, big_got = 0;
  bool big_active = false, big_ready = false;
  std::error_code rx_error;  // sticky: the peer broke the message protocol

  ~Impl() {
    Close();
    CloseFd(received_fd);
    for (int& h : handle_fds) CloseFd(h);
  }

  // Keeps the fds of an SCM_RIGHTS message: the upgrade's segment during setup, passed
  // handles afterwards.
  void TakeFds(msghdr& msg) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int got;
        std::memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        if (setup_done) {
          handle_fds.push_back(got);
        } else {
          CloseFd(received_fd);  // keep only the latest
          received_fd = got;
        }
      }
    }
  }

  bool shm() const { return tx.has_value(); }

  // ---------------------------------------------------------------- socket reads
  // Receives into the parser; captures an SCM_RIGHTS fd. Returns bytes read (0 = EOF).
  Expected<size_t> RecvSome(std::optional<Clock::time_point> deadline, bool timeout_is_handshake) {
    bool try_first = true;  // data is often there already: poll() only after EAGAIN
    for (;;) {
      if (!try_first) {
        pollfd p{fd, POLLIN, 0};
        int pr = ::poll(&p, 1, PollMs(deadline));
        if (pr < 0) {
          if (errno == EINTR) continue;
          return MakeUnexpected(Errno());
        }
        if (pr == 0) {
          return timeout_is_handshake ? TransportErrc::kHandshakeTimeout : TransportErrc::kTimedOut;
        }
      }
      try_first = false;
      auto space = parser.PrepareWrite(64 * 1024);
      iovec iov{space.data(), space.size()};
      alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 4)];
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = cbuf;
      msg.msg_controllen = sizeof(cbuf);
      ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
        if (errno == ECONNRESET) {
          eof = true;
          return size_t{0};
        }
        return MakeUnexpected(Errno());
      }
      TakeFds(msg);
      parser.CommitWrite(static_cast<size_t>(n));
      if (n == 0) eof = true;
      return static_cast<size_t>(n);
    }
  }

  // Next frame from the socket (handshake/upgrade or socket data path), in place.
  Expected<std::span<const std::byte>> PeekFrame(std::optional<Clock::time_point> deadline,
                                                 bool handshake) {
    for (;;) {
      auto f = parser.Peek();
      if (f) return f;
      if (f.error() != make_error_code(TransportErrc::kWouldBlock)) return f;
      if (eof) {
        // Stock Python closes by closing the socket: EOF at a frame boundary is a clean end.
        if (parser.buffered() == 0 && !handshake) return TransportErrc::kClosed;
        return TransportErrc::kPeerDead;
      }
      auto n = RecvSome(deadline, handshake);
      if (!n) return MakeUnexpected(n.error());
    }
  }

  Expected<std::vector<std::byte>> ReadFrame(std::optional<Clock::time_point> deadline) {
    auto f = PeekFrame(deadline, true);
    if (!f) return MakeUnexpected(f.error());
    std::vector<std::byte> out(f->begin(), f->end());
    parser.Pop();
    return out;
  }

  // ---------------------------------------------------------------- handshake + upgrade
  Expected<void> Authenticate(HandshakeRole role, std::string_view authkey,
                              Clock::time_point deadline) {
    HandshakeOptions hopts = options.auth;
    hopts.advertise_shmlink = options.enable_shm;
    auto hs = Handshake::Create(role, authkey, hopts);
    if (!hs) return MakeUnexpected(hs.error());
    std::vector<Bytes> out;
    auto r = hs->Start(&out);
    if (!r) return r;
    while (true) {
      for (const Bytes& f : out) {
        auto s = SendFrame(fd, f);
        if (!s && !hs->failed()) return s;
      }
      out.clear();
      if (hs->failed() || hs->done()) break;
      auto frame = PeekFrame(deadline, true);
      if (!frame) return MakeUnexpected(frame.error());
      r = hs->OnFrame(*frame, &out);
      parser.Pop();
      if (!r) {
        for (const Bytes& f : out) (void)SendFrame(fd, f);  // #FAILURE#
        return r;
      }
    }
    peer_is_shmlink = hs->peer_is_shmlink();
    return {};
  }

  Expected<void> AttachRings(std::shared_ptr<Segment> seg, bool server) {
    auto g = ValidateSpscSegment(*seg, SegmentKind::kConnection, 2);
    if (!g) return MakeUnexpected(g.error());
    SpscRegion r0 = SpscRegionAt(*seg, *g, 0), r1 = SpscRegionAt(*seg, *g, 1);
    tx_region = server ? r0 : r1;
    rx_region = server ? r1 : r0;
    auto p = SpscProducer::Claim(seg, tx_region);
    if (!p) return MakeUnexpected(p.error());
    auto c = SpscConsumer::Claim(seg, rx_region);
    if (!c) return MakeUnexpected(c.error());
    tx.emplace(std::move(*p));
    rx.emplace(std::move(*c));
    segment = std::move(seg);
    return {};
  }

  void DropRings() {
    tx.reset();
    rx.reset();
    segment.reset();
    creator_lock.Release();
  }

  Expected<void> ServerUpgrade(Clock::time_point deadline) {
    const uint64_t cap = options.ring_capacity;
    auto size = SpscSegmentSize(2, cap);
    std::optional<Segment> seg;
    std::string name;
    if (size && cap >= kMinRingCapacity) {
      if (tcp) {
        name = "/shmlink-conn-" + std::to_string(::getpid()) + "-" + RandomHex(12);
        auto s = Segment::Create(name, *size, UnlinkPolicy::kUnlinkOnDestroy, 0600);
        if (s) seg.emplace(std::move(*s));
      } else {
        auto s = Segment::CreateAnonymous(*size);
        if (s) seg.emplace(std::move(*s));
      }
    }
    std::array<std::byte, kTokenSize> token{};
    bool ok = seg.has_value();
    if (ok) {
      // The creator lock before the header is published (a sweeper judges only published
      // segments), held until the rings are dropped.
      auto lock = HolderLock::Acquire(*seg, kCreatorHolderSlot);
      ok = static_cast<bool>(lock);
      if (ok) creator_lock = std::move(*lock);
    }
    if (ok) {
      InitSpscSegment(*seg, SegmentKind::kConnection, 2, cap);
      LogEvent(LogLevel::kDebug, "create", seg->name(), "connection rings, capacity %llu each",
               static_cast<unsigned long long>(cap));
      ok = static_cast<bool>(AttachRings(std::make_shared<Segment>(std::move(*seg)), true));
      ok = ok && RAND_bytes(reinterpret_cast<unsigned char*>(token.data()), kTokenSize) == 1;
      ok = ok && static_cast<bool>(tx->try_send(token));
    }
    if (!ok) {
      DropRings();
      return SendFrame(fd, AsBytes(kUpgradeNo));
    }
    std::vector<std::byte> offer(AsBytes(kUpgradeOffer).begin(), AsBytes(kUpgradeOffer).end());
    offer.push_back(std::byte{static_cast<uint8_t>(tcp ? 1 : 0)});
    for (int i = 0; i < 8; ++i) offer.push_back(static_cast<std::byte>(cap >> (8 * i)));
    if (tcp) {
      auto nb = AsBytes(name);
      offer.insert(offer.end(), nb.begin(), nb.end());
    }
    auto s = SendFrame(fd, offer, tcp ? -1 : segment->fd());
    if (!s) {
      DropRings();
      return s;
    }
    auto reply = ReadFrame(deadline);
    if (!reply) {
      DropRings();
      return MakeUnexpected(reply.error());
    }
    if (reply->size() == kUpgradeNo.size() && StartsWith(*reply, kUpgradeNo)) {
      DropRings();
      return {};
    }
    if (reply->size() != kUpgradeOk.size() + kTokenSize || !StartsWith(*reply, kUpgradeOk) ||
        std::memcmp(reply->data() + kUpgradeOk.size(), token.data(), kTokenSize) != 0) {
      DropRings();
      return TransportErrc::kProtocolError;
    }
    if (tcp) (void)segment->Unlink();  // both sides mapped it: nothing can leak now
    parser.set_max_payload(0);         // nothing but doorbells/EOF from now on
    return {};
  }

  Expected<void> ClientUpgrade(Clock::time_point deadline) {
    auto offer = ReadFrame(deadline);
    if (!offer) return MakeUnexpected(offer.error());
    if (offer->size() == kUpgradeNo.size() && StartsWith(*offer, kUpgradeNo)) {
      CloseFd(received_fd);
      return {};
    }
    if (!StartsWith(*offer, kUpgradeOffer) || offer->size() < kUpgradeOffer.size() + 9) {
      return TransportErrc::kProtocolError;
    }
    const std::byte* p = offer->data() + kUpgradeOffer.size();
    const uint8_t via = std::to_integer<uint8_t>(p[0]);
    uint64_t cap = 0;
    for (int i = 0; i < 8; ++i) cap |= uint64_t{std::to_integer<uint8_t>(p[1 + i])} << (8 * i);
    std::string name(reinterpret_cast<const char*>(p + 9),
                     offer->size() - kUpgradeOffer.size() - 9);
    auto attach = [&]() -> Expected<void> {
      Expected<Segment> seg = TransportErrc::kProtocolError;
      if (via == 0) {
        if (received_fd < 0) return TransportErrc::kProtocolError;
        int f = received_fd;
        received_fd = -1;
        seg = Segment::FromFd(f);
      } else if (via == 1) {
        seg = Segment::Open(name);
      }
      if (!seg) return MakeUnexpected(seg.error());
      auto shared = std::make_shared<Segment>(std::move(*seg));
      auto r = AttachRings(shared, false);
      if (!r) return r;
      if (rx->capacity() != cap) return TransportErrc::kProtocolError;
      return {};
    };
    std::array<std::byte, kTokenSize> token{};
    auto ok = attach();
    if (ok) {
      auto t = rx->try_recv(token);
      if (!t || *t != kTokenSize) ok = TransportErrc::kProtocolError;
    }
    CloseFd(received_fd);
    if (!ok) {
      DropRings();
      return SendFrame(fd, AsBytes(kUpgradeNo));
    }
    std::vector<std::byte> reply(AsBytes(kUpgradeOk).begin(), AsBytes(kUpgradeOk).end());
    reply.insert(reply.end(), token.begin(), token.end());
    auto s = SendFrame(fd, reply);
    if (!s) {
      DropRings();
      return s;
    }
    parser.set_max_payload(0);
    return {};
  }

  Expected<void> Setup(HandshakeRole role, std::string_view authkey) {
    const Clock::time_point deadline = Clock::now() + options.handshake_timeout;
    Expected<void> r;
    if (options.authenticate) r = Authenticate(role, authkey, deadline);
    if (!r) return r;
    if (options.enable_shm && peer_is_shmlink) {
      r = role == HandshakeRole::kServer ? ServerUpgrade(deadline) : ClientUpgrade(deadline);
      if (!r) return r;
    }
    if (!shm()) parser.set_max_payload(options.max_socket_message);
    setup_done = true;
    // The read that took the peer's last handshake frame may also have taken the first
    // byte and fd of a handle it sent right away (a read ends after an fd-carrying byte,
    // so at most one): that fd is a handle, not the upgrade's segment.
    if (received_fd >= 0) {
      handle_fds.push_back(received_fd);
      received_fd = -1;
    }
    return {};
  }

  // ---------------------------------------------------------------- shm helpers
  // Drains doorbell bytes; returns true if the socket reached EOF (peer gone).
  bool DrainSocket() {
    if (eof) return true;
    std::byte buf[256];
    for (;;) {
      // recvmsg, not recv: a passed handle's fd rides on one of these bytes.
      iovec iov{buf, sizeof(buf)};
      alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 4)];
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = cbuf;
      msg.msg_controllen = sizeof(cbuf);
      ssize_t n = ::recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      if (n > 0) TakeFds(msg);
      if (n > 0) continue;
      if (n == 0) {
        eof = true;
        return true;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
      eof = true;  // ECONNRESET etc.
      return true;
    }
  }

  // For the sending side: EOF visible without consuming doorbells meant for the reader.
  bool SocketHungUp() const {
    pollfd p{fd, POLLRDHUP, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
  }

  WaitOptions WaitFor(Timeout timeout) const {
    WaitOptions w = options.wait;
    w.timeout = timeout.count() < 0 ? WaitOptions::kInfinite : timeout;
    return w;
  }

  Expected<std::span<const std::byte>> ShmPeek(Timeout timeout) {
    auto r = rx->try_peek();
    if (r) return r;
    if (r.error() != make_error_code(RingErrc::kWouldBlock))
      return MakeUnexpected(MapRingError(r.error()));
    Clock::time_point next_check = Clock::now();
    auto try_fn = [&]() -> Expected<std::span<const std::byte>> {
      auto m = rx->try_peek();
      if (m || m.error() != make_error_code(RingErrc::kWouldBlock)) return m;
      const Clock::time_point now = Clock::now();
      if (now >= next_check) {
        next_check = now + kSocketCheckInterval;
        if (DrainSocket()) {
          // The peer closed the socket: whatever it committed before is visible now.
          m = rx->try_peek();
          if (m || m.error() != make_error_code(RingErrc::kWouldBlock)) return m;
          return RingErrc::kPeerDead;
        }
      }
      return m;
    };
    auto m = internal::BlockingWaitWith(
        try_fn, rx_region.control->data_event,
        [this] { return SpscRoleDied(*segment, rx_region, SpscRole::kProducer); }, WaitFor(timeout),
        &rx_region.control->consumer_stats);
    if (!m) return MakeUnexpected(MapRingError(m.error()));
    return m;
  }

  Expected<std::span<std::byte>> ShmReserve(size_t n) {
    auto r = tx->try_reserve(n);
    if (r) return r;
    if (r.error() != make_error_code(RingErrc::kWouldBlock))
      return MakeUnexpected(MapRingError(r.error()));
    Clock::time_point next_check = Clock::now();
    auto try_fn = [&]() -> Expected<std::span<std::byte>> {
      auto b = tx->try_reserve(n);
      if (b || b.error() != make_error_code(RingErrc::kWouldBlock)) return b;
      const Clock::time_point now = Clock::now();
      if (now >= next_check) {
        next_check = now + kSocketCheckInterval;
        if (SocketHungUp()) return RingErrc::kPeerDead;
      }
      return b;
    };
    auto b = internal::BlockingWaitWith(
        try_fn, tx_region.control->space_event,
        [this] { return SpscRoleDied(*segment, tx_region, SpscRole::kConsumer); },
        WaitFor(kForever), &tx_region.control->producer_stats);
    if (!b) return MakeUnexpected(MapRingError(b.error()));
    return b;
  }

  // ---- message layer over the rings (see kMsgWhole)
  uint64_t ShmInlineMax() const { return tx->max_message_size() - kMsgHeader; }
  uint64_t ShmChunk() const { return tx->capacity() / 4 - 32; }

  Expected<std::span<std::byte>> ShmReserveWhole(size_t n) {
    auto r = ShmReserve(n + kMsgHeader);
    if (!r) return r;
    const uint32_t h[2] = {kMsgWhole, 0};
    std::memcpy(r->data(), h, sizeof(h));
    return r->subspan(kMsgHeader);
  }

  // Sends `msg` (larger than ShmInlineMax) as FIRST + MORE chunks, committing each so the
  // reader drains while we write.
  Expected<void> ShmSendLarge(std::span<const std::byte> msg) {
    const uint64_t chunk = ShmChunk();
    size_t off = 0;
    bool first = true;
    while (first || off < msg.size()) {
      const size_t n = std::min<size_t>(chunk, msg.size() - off);
      const size_t hdr = first ? kMsgHeader + 8 : kMsgHeader;
      auto r = ShmReserve(hdr + n);
      if (!r) return MakeUnexpected(r.error());
      const uint32_t h[2] = {first ? kMsgFirst : kMsgMore, 0};
      std::memcpy(r->data(), h, sizeof(h));
      if (first) {
        const uint64_t total = msg.size();
        std::memcpy(r->data() + kMsgHeader, &total, sizeof(total));
      }
      if (n > 0) std::memcpy(r->data() + hdr, msg.data() + off, n);
      ShmCommit();
      off += n;
      first = false;
    }
    return {};
  }

  Expected<std::span<const std::byte>> Broken(TransportErrc e) {
    rx_error = make_error_code(e);
    big_active = false;
    big_rx = {};
    return MakeUnexpected(rx_error);
  }

  // The next whole message (reassembled if it came in chunks).
  Expected<std::span<const std::byte>> ShmPeekMessage(Timeout timeout) {
    if (rx_error) return MakeUnexpected(rx_error);
    if (big_ready) return std::span<const std::byte>(big_rx);
    const auto deadline = DeadlineFor(timeout);
    for (;;) {
      Timeout left = kForever;
      if (deadline) left = std::max<Timeout>(Timeout{0}, *deadline - Clock::now());
      auto r = ShmPeek(left);
      if (!r) return r;
      if (r->size() < kMsgHeader) return Broken(TransportErrc::kProtocolError);
      uint32_t kind;
      std::memcpy(&kind, r->data(), sizeof(kind));
      if (!big_active) {
        if (kind == kMsgWhole) return r->subspan(kMsgHeader);
        // A passed descriptor is no message: left in place for recv_handle.
        if (kind == kMsgHandle) return TransportErrc::kProtocolError;
        if (kind != kMsgFirst || r->size() < kMsgHeader + 8) {
          return Broken(TransportErrc::kProtocolError);
        }
        uint64_t total;
        std::memcpy(&total, r->data() + kMsgHeader, sizeof(total));
        const size_t n = r->size() - kMsgHeader - 8;
        if (total > options.max_socket_message) return Broken(TransportErrc::kFrameTooLarge);
        if (n > total) return Broken(TransportErrc::kProtocolError);
        // Grow with the data that arrives, not with the length the peer claims.
        big_rx.clear();
        big_rx.reserve(std::min<uint64_t>(total, uint64_t{64} << 20));
        const std::byte* d = r->data() + kMsgHeader + 8;
        big_rx.insert(big_rx.end(), d, d + n);
        big_total = total;
        big_got = n;
        big_active = true;
      } else {
        const size_t n = r->size() - kMsgHeader;
        if (kind != kMsgMore || n > big_total - big_got) {
          return Broken(TransportErrc::kProtocolError);
        }
        const std::byte* d = r->data() + kMsgHeader;
        big_rx.insert(big_rx.end(), d, d + n);
        big_got += n;
      }
      rx->release();
      if (big_got == big_total) {
        big_active = false;
        big_ready = true;
        return std::span<const std::byte>(big_rx);
      }
    }
  }

  void ShmRelease() {
    if (big_ready) {
      big_ready = false;
      if (big_rx.capacity() > (uint64_t{16} << 20)) {
        big_rx = {};  // do not hold on to a huge buffer
      } else {
        big_rx.clear();
      }
      return;
    }
    rx->release();
  }

  void ShmCommit() {
    tx->commit();
    // SYNC(doorbell): seq_cst load after commit()'s seq_cst fence (see the file comment).
    if (tx_region.control->data_event.waiters.load(std::memory_order_seq_cst) >= kFdWaiterBias) {
      RingDoorbell();
    }
  }

  // Slow path of ShmCommit: the reader armed fileno(). A reader that died armed is
  // disarmed here (see the file comment) instead of being rung at every commit.
  void RingDoorbell() {
    const Clock::time_point now = Clock::now();
    if (now >= next_reader_check) {
      next_reader_check = now + kSocketCheckInterval;
      if (SpscRoleDied(*segment, tx_region, SpscRole::kConsumer)) {
        std::atomic<uint32_t>& waiters = tx_region.control->data_event.waiters;
        // SYNC(doorbell): seq_cst. Only the reader's holder adds or removes the bias, and
        // it is dead: take its bias off once (never below it: futex sleepers' counts stay).
        uint32_t w = waiters.load(std::memory_order_seq_cst);
        while (w >= kFdWaiterBias &&
               !waiters.compare_exchange_weak(w, w - kFdWaiterBias, std::memory_order_seq_cst)) {
        }
        LogEvent(LogLevel::kInfo, "peer-dead", segment->name(),
                 "the reader died with fileno() armed: disarmed");
        return;
      }
    }
    const char bell = 1;
    if (::send(fd, &bell, 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1) ++stats.doorbells_sent;
    // EAGAIN: the socket already holds unread doorbells, so the reader is woken anyway.
  }

  void Disarm() {
    if (!armed) return;
    armed = false;
    rx_region.control->data_event.waiters.fetch_sub(kFdWaiterBias, std::memory_order_seq_cst);
  }

  void Close() noexcept {
    if (closed) return;
    closed = true;
    if (tx && ::getpid() != creator) {
      // A copy inherited by fork(): close our fd only. The role handles are leaked on
      // purpose: their destructors would release the parent's roles (owner words) and
      // store our stale read position; the streams stay open for the parent.
      CloseFd(fd);
      (void)new SpscProducer(std::move(*tx));
      (void)new SpscConsumer(std::move(*rx));
      tx.reset();
      rx.reset();
      segment.reset();
      return;
    }
    if (tx) {
      Disarm();
      tx->close();  // end of stream after every committed message
      rx->close();  // a peer blocked on our full ring gets kClosed
    }
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
    CloseFd(fd);
    DropRings();
  }
};

// ====================================================================== Connection

Connection::Connection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Connection::Connection(Connection&&) noexcept = default;
Connection& Connection::operator=(Connection&&) noexcept = default;
Connection::~Connection() = default;

bool Connection::is_shm() const noexcept { return impl_->shm(); }
uint64_t Connection::max_message_size() const noexcept { return impl_->options.max_socket_message; }
const PeerInfo& Connection::peer() const noexcept { return impl_->peer; }
bool Connection::peer_is_shmlink() const noexcept { return impl_->peer_is_shmlink; }
ConnectionStats Connection::stats() const noexcept { return impl_->stats; }
bool Connection::closed() const noexcept { return impl_->closed; }
int Connection::fileno() const noexcept { return impl_->fd; }
void Connection::close() noexcept { impl_->Close(); }

Expected<std::span<std::byte>> Connection::reserve(size_t n) {
  Impl& m = *impl_;
  if (m.closed || m.reserved) return TransportErrc::kBadState;
  if (n > max_message_size()) return TransportErrc::kTooLarge;
  if (m.shm()) {
    if (n <= m.ShmInlineMax()) {
      auto r = m.ShmReserveWhole(n);
      if (r) m.reserved = true;
      return r;
    }
    m.big_tx.resize(n);  // sent in chunks by commit()
    m.big_reserved = true;
    m.reserved = true;
    return std::span<std::byte>(m.big_tx);
  }
  m.send_buf.resize(kMaxFrameHeader + n);
  m.reserved = true;
  return std::span<std::byte>(m.send_buf.data() + kMaxFrameHeader, n);
}

Expected<void> Connection::commit() {
  Impl& m = *impl_;
  if (m.closed || !m.reserved) return TransportErrc::kBadState;
  m.reserved = false;
  if (m.shm()) {
    if (m.big_reserved) {
      m.big_reserved = false;
      auto r = m.ShmSendLarge(m.big_tx);
      m.big_tx = {};
      return r;
    }
    m.ShmCommit();
    return {};
  }
  const size_t n = m.send_buf.size() - kMaxFrameHeader;
  std::byte hdr[kMaxFrameHeader];
  const size_t hlen = EncodeFrameHeader(n, hdr);
  std::byte* start = m.send_buf.data() + kMaxFrameHeader - hlen;
  std::memcpy(start, hdr, hlen);
  iovec iov{start, hlen + n};
  auto s = SendAll(m.fd, &iov, 1);
  if (!s) return s;
  ++m.stats.socket_frames_sent;
  m.stats.socket_bytes_sent += n;
  return {};
}

Expected<void> Connection::send_bytes(std::span<const std::byte> msg) {
  Impl& m = *impl_;
  if (m.closed || m.reserved) return TransportErrc::kBadState;
  if (msg.size() > max_message_size()) return TransportErrc::kTooLarge;
  if (m.shm()) {
    if (msg.size() > m.ShmInlineMax()) return m.ShmSendLarge(msg);
    auto buf = m.ShmReserveWhole(msg.size());
    if (!buf) return MakeUnexpected(buf.error());
    if (!msg.empty()) std::memcpy(buf->data(), msg.data(), msg.size());
    m.ShmCommit();
    return {};
  }
  auto s = SendFrame(m.fd, msg);
  if (!s) return s;
  ++m.stats.socket_frames_sent;
  m.stats.socket_bytes_sent += msg.size();
  return {};
}

Expected<void> Connection::send_bytes(std::string_view msg) { return send_bytes(AsBytes(msg)); }

Expected<std::span<const std::byte>> Connection::peek(Timeout timeout) {
  Impl& m = *impl_;
  if (m.closed) return TransportErrc::kBadState;
  if (m.shm()) return m.ShmPeekMessage(timeout);
  const bool was_peeked = m.peeked;
  auto f = m.PeekFrame(DeadlineFor(timeout), false);
  if (!f) return f;
  if (!was_peeked) {
    m.peeked = true;
    ++m.stats.socket_frames_received;
    m.stats.socket_bytes_received += f->size();
  }
  return f;
}

void Connection::release() noexcept {
  Impl& m = *impl_;
  if (m.closed) return;
  if (m.shm()) {
    m.ShmRelease();
  } else if (m.peeked) {
    m.parser.Pop();
    m.peeked = false;
  }
}

Expected<std::vector<std::byte>> Connection::recv_bytes(Timeout timeout) {
  auto f = peek(timeout);
  if (!f) return MakeUnexpected(f.error());
  std::vector<std::byte> out(f->begin(), f->end());
  release();
  return out;
}

Expected<void> Connection::send(const pickle::Value& v, int protocol) {
  auto data = pickle::Encode(v, protocol);
  if (!data) return MakeUnexpected(data.error());
  return send_bytes(*data);
}

Expected<pickle::Value> Connection::recv(Timeout timeout) {
  auto f = peek(timeout);
  if (!f) return MakeUnexpected(f.error());
  auto v = pickle::Decode(*f);
  release();
  return v;
}

Expected<bool> Connection::poll(Timeout timeout) {
  Impl& m = *impl_;
  if (m.closed) return TransportErrc::kBadState;
  if (m.shm()) {
    auto r = m.ShmPeekMessage(timeout);
    if (r) return true;
    if (r.error() == make_error_code(TransportErrc::kTimedOut)) return false;
    return true;  // end of stream / error pending: recv will report it without blocking
  }
  if (m.parser.HasFrame() || m.eof) return true;
  const auto deadline = DeadlineFor(timeout);
  for (;;) {
    pollfd p{m.fd, POLLIN, 0};
    int pr = ::poll(&p, 1, PollMs(deadline));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) return false;
    auto n = m.RecvSome(Clock::now(), false);
    if (!n) return true;
    if (m.parser.HasFrame() || m.eof) return true;
    if (deadline && Clock::now() >= *deadline) return false;
  }
}

Expected<void> Connection::send_handle(int handle) {
  Impl& m = *impl_;
  if (m.closed || m.reserved) return TransportErrc::kBadState;
  if (m.tcp || handle < 0) return TransportErrc::kInvalidArgument;
  // Python's sendfds: one byte holding the fd count (1), the fd as SCM_RIGHTS.
  std::byte one{1};
  iovec iov{&one, 1};
  auto s = SendAll(m.fd, &iov, 1, handle);
  if (!s) return s;
  if (!m.shm()) return {};
  auto r = m.ShmReserve(kMsgHeader);
  if (!r) return MakeUnexpected(r.error());
  const uint32_t h[2] = {kMsgHandle, 0};
  std::memcpy(r->data(), h, sizeof(h));
  m.ShmCommit();
  return {};
}

Expected<int> Connection::recv_handle(Timeout timeout) {
  Impl& m = *impl_;
  if (m.closed) return TransportErrc::kBadState;
  if (m.tcp) return TransportErrc::kInvalidArgument;
  const auto deadline = DeadlineFor(timeout);
  auto left = [&] {
    return deadline ? std::max<Timeout>(Timeout{0}, *deadline - Clock::now()) : kForever;
  };
  if (m.shm()) {
    if (m.rx_error) return MakeUnexpected(m.rx_error);
    if (m.big_active || m.big_ready) return TransportErrc::kProtocolError;
    auto r = m.ShmPeek(left());
    if (!r) return MakeUnexpected(r.error());
    uint32_t kind = 0;
    if (r->size() >= kMsgHeader) std::memcpy(&kind, r->data(), sizeof(kind));
    if (kind != kMsgHandle) return TransportErrc::kProtocolError;
    // The fd was sent before the record was committed: it is in the socket by now.
    while (m.handle_fds.empty()) {
      if (m.DrainSocket() && m.handle_fds.empty()) return TransportErrc::kPeerDead;
      if (!m.handle_fds.empty()) break;
      pollfd p{m.fd, POLLIN, 0};
      if (::poll(&p, 1, PollMs(deadline)) == 0) return TransportErrc::kTimedOut;
    }
    m.rx->release();
    const int fd = m.handle_fds.front();
    m.handle_fds.pop_front();
    return fd;
  }
  if (m.peeked) return TransportErrc::kBadState;
  while (m.parser.buffered() == 0) {
    if (m.eof) return TransportErrc::kClosed;
    auto n = m.RecvSome(deadline, false);
    if (!n) return MakeUnexpected(n.error());
  }
  // The kernel ends a read after the byte that carries fds, so when that byte is next in
  // the stream its fd has been taken already.
  if (m.handle_fds.empty() || !m.parser.PopRawByteIf(std::byte{1})) {
    return TransportErrc::kProtocolError;
  }
  const int fd = m.handle_fds.front();
  m.handle_fds.pop_front();
  return fd;
}

Expected<bool> Connection::arm_fileno() {
  Impl& m = *impl_;
  if (m.closed) return TransportErrc::kBadState;
  if (!m.shm()) return m.parser.HasFrame() || m.eof;
  if (!m.armed) {
    // SYNC(doorbell): seq_cst RMW, then the seq_cst re-check below.
    m.rx_region.control->data_event.waiters.fetch_add(kFdWaiterBias, std::memory_order_seq_cst);
    m.armed = true;
  }
  auto r = m.rx->try_peek();
  if (m.big_ready || r || r.error() != make_error_code(RingErrc::kWouldBlock) || m.DrainSocket()) {
    m.Disarm();
    return true;
  }
  return false;
}

void Connection::disarm_fileno() noexcept {
  Impl& m = *impl_;
  if (m.closed || !m.shm()) return;
  m.Disarm();
  m.DrainSocket();
}

// ====================================================================== Listener

struct Listener::Impl {
  int fd = -1;
  Address address;
  std::string authkey;
  ListenerOptions options;
  PeerInfo last_accepted;
  ino_t inode = 0;  // socket file we created (removed on close only if still ours)
  dev_t dev = 0;
  pid_t creator = ::getpid();  // a forked child's copy never removes the parent's file

  ~Impl() { Close(); }
  void Close() noexcept {
    if (fd < 0) return;
    CloseFd(fd);
    if (address.family == AddressFamily::kUnixPath && ::getpid() == creator) {
      struct stat st {};
      if (::lstat(address.path.c_str(), &st) == 0 && st.st_ino == inode && st.st_dev == dev) {
        ::unlink(address.path.c_str());
      }
    }
  }
};

namespace {

// True if some socket in this network namespace is bound to `path` (/proc/net/unix lists
// bound paths as given to bind(); relative binds elsewhere are caught by the probe below).
bool PathBoundInProc(const std::string& path) {
  FILE* f = std::fopen("/proc/net/unix", "re");
  if (f == nullptr) return false;
  char line[512];
  bool found = false;
  while (!found && std::fgets(line, sizeof(line), f) != nullptr) {
    std::string_view l(line);
    while (!l.empty() && (l.back() == '\n' || l.back() == ' ')) l.remove_suffix(1);
    found = l.size() > path.size() && l.substr(l.size() - path.size()) == path &&
            l[l.size() - path.size() - 1] == ' ';
  }
  std::fclose(f);
  return found;
}

// A socket file that no socket is bound to and that refuses connections belongs to a dead
// listener. /proc/net/unix is consulted first so a live listener is not disturbed by a
// probe connection.
bool IsStaleSocketFile(const std::string& path, const SockAddr& sa) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  if (PathBoundInProc(path)) return false;
  int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) return false;
  const int rc = ::connect(probe, sa.get(), sa.length);
  const int err = errno;
  ::close(probe);
  return rc != 0 && err == ECONNREFUSED;
}

// A key is required when authenticating and refused when not (so that an empty key can
// never silently mean "no authentication").
bool KeyMatchesMode(std::string_view authkey, const ConnectionOptions& o) {
  return o.authenticate ? !authkey.empty() : authkey.empty();
}

// The peer of TCP socket `fd` is on a loopback address (127.0.0.0/8, ::1, or ::ffff:127.x).
bool PeerIsLoopback(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return false;
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
  }
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127;
  }
  return false;
}

bool UidAllowed(uid_t uid, const ListenerOptions& o) {
  if (o.allow_any_uid || uid == ::geteuid()) return true;
  return std::find(o.allowed_uids.begin(), o.allowed_uids.end(), uid) != o.allowed_uids.end();
}

// The uid owning the IPv4 TCP socket whose local end is `peer` and remote end is `self`,
// from /proc/net/tcp: available when the peer runs on this host (loopback). -1 if not.
uid_t LoopbackTcpUid(const sockaddr_in& peer, const sockaddr_in& self) {
  auto hex = [](const sockaddr_in& a) {
    char buf[32];
    // /proc prints the address as the host-order value of the network-order word.
    std::snprintf(buf, sizeof(buf), "%08X:%04X", a.sin_addr.s_addr, ntohs(a.sin_port));
    return std::string(buf);
  };
  const std::string local = hex(peer), remote = hex(self);
  FILE* f = std::fopen("/proc/net/tcp", "re");
  if (f == nullptr) return static_cast<uid_t>(-1);
  char line[512];
  uid_t uid = static_cast<uid_t>(-1);
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    char l[64], r[64];
    unsigned st = 0, u = 0;
    // sl local rem st tx:rx tr:when retrnsmt uid
    if (std::sscanf(line, " %*d: %63s %63s %x %*s %*s %*s %u", l, r, &st, &u) == 4 && local == l &&
        remote == r) {
      uid = static_cast<uid_t>(u);
      break;
    }
  }
  std::fclose(f);
  return uid;
}

void ReadPeer(int fd, PeerInfo* peer) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    peer->address = FromSockAddr(reinterpret_cast<sockaddr*>(&ss), len);
  }
  if (ss.ss_family == AF_INET) {
    sockaddr_in self{};
    socklen_t slen = sizeof(self);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&self), &slen) == 0) {
      peer->uid = LoopbackTcpUid(*reinterpret_cast<const sockaddr_in*>(&ss), self);
    }
  }
  if (ss.ss_family == AF_UNIX) {
    ucred cred{};
    socklen_t clen = sizeof(cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) {
      peer->pid = cred.pid;
      peer->uid = cred.uid;
      peer->gid = cred.gid;
    }
  }
}

}  // namespace

Listener::Listener(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Listener::Listener(Listener&&) noexcept = default;
Listener& Listener::operator=(Listener&&) noexcept = default;
Listener::~Listener() = default;

Expected<Listener> Listener::Create(std::string_view address, std::string_view authkey,
                                    const ListenerOptions& options) {
  auto a = Address::Parse(address);
  if (!a) return MakeUnexpected(a.error());
  return Create(*a, authkey, options);
}

namespace {

// True only if the kernel says there is no live process `pid` (unknown is not dead).
bool ListenerGone(pid_t pid) noexcept {
  auto id = TryIdentityOf(pid);
  return id && id->start_ticks == 0;
}

// Removes /dev/shm/shmlink-conn-<pid>-* ring segments left by TCP listeners that died
// between creating a connection's segment and unlinking it (the client's confirmation
// never came: SIGKILL mid-handshake). A published segment is stale when the kernel says
// nobody holds its creator lock nor any of its four role locks (SpscSegmentUnheld: no
// /proc, right across PID namespaces); a segment whose header was never published (or of
// another layout) falls back to the pid in its name. Live listeners' segments and other
// users' files are left alone.
void SweepStaleConnSegments() noexcept {
  static constexpr std::string_view kPrefix = "shmlink-conn-";
  DIR* dir = ::opendir("/dev/shm");
  if (dir == nullptr) return;
  while (dirent* e = ::readdir(dir)) {
    const std::string_view file(e->d_name);
    if (file.substr(0, kPrefix.size()) != kPrefix) continue;
    const std::string name = "/" + std::string(file);
    pid_t pid = 0;
    for (char ch : file.substr(kPrefix.size())) {
      if (ch < '0' || ch > '9') break;
      pid = pid * 10 + (ch - '0');
    }
    auto seg = Segment::Open(name);
    bool dead = false;
    if (seg) {
      auto f = ValidateHeader(seg->data(), seg->size(), SegmentKind::kConnection);
      dead = f ? SpscSegmentUnheld(*seg, 2) : (pid > 0 && ListenerGone(pid));
    } else if (seg.error() == RingErrc::kTruncated) {
      dead = pid > 0 && ListenerGone(pid);
    }
    if (dead && seg) {
      auto removed = UnlinkShmIfSame(name, seg->fd());
      if (removed && *removed) {
        LogEvent(LogLevel::kInfo, "stale-removed", name, "its listener died mid-handshake");
      }
    } else if (dead) {
      ::shm_unlink(name.c_str());  // never published: not a segment to decide on
    }
  }
  ::closedir(dir);
}

}  // namespace

Expected<Listener> Listener::Create(const Address& address, std::string_view authkey,
                                    const ListenerOptions& options) {
  if (!KeyMatchesMode(authkey, options.connection)) return TransportErrc::kInvalidArgument;
  auto sa = ToSockAddr(address);
  if (!sa) return MakeUnexpected(sa.error());
  auto impl = std::make_unique<Impl>();
  impl->authkey = std::string(authkey);
  impl->options = options;
  impl->address = address;
  impl->fd = ::socket(sa->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (impl->fd < 0) return MakeUnexpected(Errno());
  if (!address.is_unix()) {
    int one = 1;
    ::setsockopt(impl->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  }
  if (::bind(impl->fd, sa->get(), sa->length) != 0) {
    if (errno == EADDRINUSE && address.family == AddressFamily::kUnixPath) {
      if (!IsStaleSocketFile(address.path, *sa)) {
        struct stat st {};
        const bool is_sock = ::lstat(address.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
        if (is_sock) return TransportErrc::kAddressInUse;
        return MakeUnexpected(std::error_code(EADDRINUSE, std::system_category()));
      }
      ::unlink(address.path.c_str());
      if (::bind(impl->fd, sa->get(), sa->length) != 0) return MakeUnexpected(Errno());
    } else if (errno == EADDRINUSE) {
      return TransportErrc::kAddressInUse;
    } else {
      return MakeUnexpected(Errno());
    }
  }
  // TCP listeners hand out named ring segments: clean up after dead predecessors.
  if (!address.is_unix() && options.connection.enable_shm) SweepStaleConnSegments();
  if (address.family == AddressFamily::kUnixPath) {
    struct stat st {};
    if (::chmod(address.path.c_str(), options.socket_mode) != 0 ||
        ::lstat(address.path.c_str(), &st) != 0) {
      const int err = errno;
      ::unlink(address.path.c_str());
      return MakeUnexpected(std::error_code(err, std::system_category()));
    }
    impl->inode = st.st_ino;
    impl->dev = st.st_dev;
  }
  if (::listen(impl->fd, options.backlog) != 0) return MakeUnexpected(Errno());
  if (!address.is_unix()) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    if (::getsockname(impl->fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
      Address bound = FromSockAddr(reinterpret_cast<sockaddr*>(&ss), len);
      impl->address.port = bound.port;
    }
  }
  return Listener(std::move(impl));
}

Expected<Connection> Listener::accept(Timeout timeout) {
  Impl& l = *impl_;
  if (l.fd < 0) return TransportErrc::kBadState;
  const auto deadline = DeadlineFor(timeout);
  int cfd = -1;
  for (;;) {
    pollfd p{l.fd, POLLIN, 0};
    int pr = ::poll(&p, 1, PollMs(deadline));
    if (pr < 0) {
      if (errno == EINTR) continue;
      return MakeUnexpected(Errno());
    }
    if (pr == 0) return TransportErrc::kTimedOut;
    cfd = ::accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (cfd >= 0) break;
    if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
    return MakeUnexpected(Errno());
  }
  auto impl = std::make_unique<Connection::Impl>();
  impl->fd = cfd;
  impl->tcp = !l.address.is_unix();
  impl->options = l.options.connection;
  if (impl->tcp) {
    int one = 1;
    ::setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  l.last_accepted = PeerInfo{};
  ReadPeer(cfd, &impl->peer);
  l.last_accepted = impl->peer;
  // Unix sockets always carry credentials; TCP only from this host (uid -1: remote).
  const bool uid_known = !impl->tcp || impl->peer.uid != static_cast<uid_t>(-1);
  if (uid_known && !UidAllowed(impl->peer.uid, l.options)) {
    return TransportErrc::kPeerNotAllowed;  // impl closes the socket
  }
  if (!l.options.connection.authenticate && impl->tcp && !l.options.allow_remote_unauthenticated &&
      !PeerIsLoopback(cfd)) {
    return TransportErrc::kPeerNotAllowed;  // unauthenticated: loopback peers only
  }
  auto r = impl->Setup(HandshakeRole::kServer, l.authkey);
  if (!r) return MakeUnexpected(r.error());  // impl's destructor closes the socket
  return Connection(std::move(impl));
}

const Address& Listener::address() const noexcept { return impl_->address; }
const PeerInfo& Listener::last_accepted() const noexcept { return impl_->last_accepted; }
int Listener::fileno() const noexcept { return impl_->fd; }
void Listener::close() noexcept { impl_->Close(); }

// ====================================================================== Client

Expected<Connection> Client(const Address& address, std::string_view authkey,
                            const ConnectionOptions& options) {
  if (!KeyMatchesMode(authkey, options)) return TransportErrc::kInvalidArgument;
  auto sa = ToSockAddr(address);
  if (!sa) return MakeUnexpected(sa.error());
  auto impl = std::make_unique<Connection::Impl>();
  impl->options = options;
  impl->tcp = !address.is_unix();
  impl->fd = ::socket(sa->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (impl->fd < 0) return MakeUnexpected(Errno());
  while (::connect(impl->fd, sa->get(), sa->length) != 0) {
    if (errno == EINTR) continue;
    return MakeUnexpected(Errno());
  }
  if (impl->tcp) {
    int one = 1;
    ::setsockopt(impl->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  ReadPeer(impl->fd, &impl->peer);
  auto r = impl->Setup(HandshakeRole::kClient, authkey);
  if (!r) return MakeUnexpected(r.error());
  return Connection(std::move(impl));
}

Expected<Connection> Client(std::string_view address, std::string_view authkey,
                            const ConnectionOptions& options) {
  auto a = Address::Parse(address);
  if (!a) return MakeUnexpected(a.error());
  return Client(*a, authkey, options);
}

}  // namespace shmlink::transport
