// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Listener / Client / Connection: Python's multiprocessing.connection API in C++, with a
// shared-memory data path between shmlink peers.
//
//   auto listener = Listener::Create("/tmp/app.sock", "secret password");   // or "localhost:6000"
//   auto conn = listener->accept();            // authenticates like Python's Listener
//   auto msg = conn->recv_bytes();             // ... or peek()/release() in place
//   conn->send_bytes(*msg);
//
//   auto c = Client("/tmp/app.sock", "secret password");
//
// Wire: every connection starts exactly like Python's (framing of frame.h, handshake of
// handshake.h), so stock Python peers interoperate on every address family. If both
// sides are shmlink (capability marker in the challenges) and ConnectionOptions.enable_shm,
// the server then offers a kConnection segment (two SPSC rings, one per direction):
//   - Unix sockets: an anonymous sealed memfd passed with SCM_RIGHTS (nothing in /dev/shm);
//   - TCP: a named segment (random name, mode 0600) that the client must map; the client
//     proves it did by echoing a token the server put in the ring; the name is unlinked as
//     soon as both sides mapped it (so peers on other hosts fall back to the socket).
// Messages then flow through the rings and the socket carries only optional doorbell bytes
// (see arm_fileno) and, finally, EOF. With a stock Python peer, or when the upgrade is
// declined, every message is a frame on the socket: same API, same semantics.
//
// End of stream: after the peer's close(), recv returns every message the peer committed,
// then kClosed. If the peer dies (or drops the socket without close()), recv returns what
// was committed, then kPeerDead, within WaitOptions.liveness_check (20 ms) of the death;
// a sender blocked on a full ring is released likewise. On the socket path an EOF at a
// frame boundary is kClosed (stock Python has no other way to close), mid-frame kPeerDead.
//
// Thread safety: a Connection may be used by one sending thread and one receiving thread
// concurrently (send_bytes/reserve/commit vs recv_bytes/peek/release/poll); otherwise
// not-thread-safe. Listener: not-thread-safe. Connections are bound to the process that
// made them: do not use them in a fork()ed child. Closing or destroying an inherited copy
// in the child is safe (it closes the child's fd only; the parent's streams stay open).
#ifndef SHMLINK_TRANSPORT_CONNECTION_H_
#define SHMLINK_TRANSPORT_CONNECTION_H_

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include <shmlink/address.h>
#include <shmlink/expected.h>
#include <shmlink/handshake.h>
#include <shmlink/pickle.h>
#include <shmlink/transport_error.h>
#include <shmlink/wait_options.h>

namespace shmlink::transport {

using Timeout = std::chrono::nanoseconds;
inline constexpr Timeout kForever{-1};

struct ConnectionOptions {
  HandshakeOptions auth;
  // false: no challenge-response at all, as Python's authkey=None (the authkey passed must
  // then be empty). Such a connection stays on the socket data path: the shm upgrade is
  // negotiated inside the handshake. A Listener still admits only peers of allowed uids
  // and, on TCP, only loopback peers (see ListenerOptions).
  bool authenticate = true;
  // Advertise the shmlink marker and use shared memory with shmlink peers. false: behave
  // exactly like stock Python (socket data path).
  bool enable_shm = true;
  // Bytes per ring (one ring per direction), a power of two in [4 KiB, 4 GiB]. Messages
  // up to ring_capacity/2 - 16 bytes are zero-copy on the shm path; larger ones are sent
  // in chunks (see max_message_size()). Chosen by the server; the client follows.
  uint64_t ring_capacity = uint64_t{1} << 20;
  // Longest message on either path (protects memory from a bogus length).
  uint64_t max_socket_message = uint64_t{1} << 31;
  // Bound on the whole handshake (authentication + upgrade). A silent peer gets
  // kHandshakeTimeout and its socket is closed.
  std::chrono::milliseconds handshake_timeout{5000};
  // How blocking shm calls wait (spin, then futex sleep). timeout is ignored (per call).
  WaitOptions wait;
};

struct ListenerOptions {
  ConnectionOptions connection;
  // Mode of the socket file (Unix paths), set before listen() so no connection can race it.
  mode_t socket_mode = 0600;
  int backlog = 128;
  // By default only peers of our own uid may connect: SO_PEERCRED on Unix sockets; for
  // TCP from this host (loopback) the uid owning the client socket in /proc/net/tcp
  // (IPv4). Remote TCP peers carry no credentials and rely on the authkey alone.
  bool allow_any_uid = false;
  std::vector<uid_t> allowed_uids;  // allowed besides our own uid
  // Without authentication (connection.authenticate = false) a TCP listener admits only
  // peers on a loopback address (127.0.0.0/8, ::1); true admits remote peers too.
  bool allow_remote_unauthenticated = false;
};

// Who is on the other end. Unix sockets: pid/uid/gid from SO_PEERCRED. TCP: uid of a
// peer on this host (IPv4, /proc/net/tcp), pid/gid -1; all -1 for remote peers.
struct PeerInfo {
  pid_t pid = -1;
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  Address address;  // the peer's socket address (TCP host:port; usually empty for Unix)
};

struct ConnectionStats {
  uint64_t socket_frames_sent = 0;  // data frames on the socket after the handshake
  uint64_t socket_frames_received = 0;
  uint64_t socket_bytes_sent = 0;  // their payload bytes
  uint64_t socket_bytes_received = 0;
  uint64_t doorbells_sent = 0;  // 1-byte wake-ups for an armed fileno() (shm path)
};

class Connection {
 public:
  Connection(Connection&&) noexcept;
  Connection& operator=(Connection&&) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  // Closes the connection (see close()).
  ~Connection();

  // True if messages travel through shared memory; false on the socket data path.
  bool is_shm() const noexcept;
  // Largest message send_bytes/reserve accept (and recv accepts): max_socket_message of
  // the options, on both paths. On shm a message up to ring_capacity/2 - 16 bytes is one
  // ring record, read in place; a larger one travels in chunks and is reassembled in a
  // buffer (peek() then returns that buffer; reserve() hands out a buffer too).
  uint64_t max_message_size() const noexcept;
  const PeerInfo& peer() const noexcept;
  // The peer's challenge carried the shmlink marker.
  bool peer_is_shmlink() const noexcept;
  // Counters (sending counters: sender thread; receiving: receiver thread). Snapshot.
  ConnectionStats stats() const noexcept;

  // ---- sending (sender thread)
  // Sends one message (copied). Blocks while the ring (or socket buffer) is full.
  // Errors: kTooLarge, kClosed (peer closed its reading side; on the socket path also
  // EPIPE/ECONNRESET, which cannot tell a close from a death), kPeerDead (shm: the peer
  // died), kBadState (closed), other socket errors in the system category.
  [[nodiscard]] Expected<void> send_bytes(std::span<const std::byte> msg);
  [[nodiscard]] Expected<void> send_bytes(std::string_view msg);
  // Zero copy: a writable span of `n` bytes for one message (in the ring on shm; in a
  // send buffer on the socket path). One reservation at a time; commit() sends it.
  // Errors as send_bytes; kBadState if a reservation is pending.
  [[nodiscard]] Expected<std::span<std::byte>> reserve(size_t n);
  // Sends the reserved message. kBadState if nothing is reserved.
  [[nodiscard]] Expected<void> commit();

  // ---- receiving (receiver thread)
  // Receives the next message (copied). Errors: kClosed (end of stream, after every
  // committed message), kPeerDead, kTimedOut, kMalformedFrame/kFrameTooLarge (socket path;
  // the connection is then unusable), kBadState (closed).
  [[nodiscard]] Expected<std::vector<std::byte>> recv_bytes(Timeout timeout = kForever);
  // Zero copy: the next message in place (in the ring, or in the receive buffer),
  // idempotent until release(). Errors as recv_bytes.
  [[nodiscard]] Expected<std::span<const std::byte>> peek(Timeout timeout = kForever);
  // Frees the peeked message (no-op if none).
  void release() noexcept;
  // True if recv would not block (a message, or end of stream / peer death, is pending);
  // false after `timeout` (0: just check). Errors: kBadState (closed).
  [[nodiscard]] Expected<bool> poll(Timeout timeout = Timeout{0});

  // ---- objects (Python's conn.send / conn.recv)
  // Pickles `v` (protocol 2..5; Python's default is 4) and sends it. Errors: the codec's
  // PickleErrc (nothing is sent), then those of send_bytes. sender thread.
  [[nodiscard]] Expected<void> send(const pickle::Value& v, int protocol = 4);
  // Receives one message and unpickles it in place. A message that is not a supported
  // pickle (e.g. a GLOBAL/REDUCE such as Python's `int` or `sum`: PickleErrc::kUnsupported)
  // is consumed and reported; nothing is looked up or executed and the connection stays
  // usable. Other errors as recv_bytes. receiver thread.
  [[nodiscard]] Expected<pickle::Value> recv(Timeout timeout = kForever);

  // ---- file descriptors (Unix-socket connections only)
  // Sends a duplicate of `fd` (SCM_RIGHTS), in order with the messages. On the socket path
  // the bytes are Python's multiprocessing.reduction.send_handle (one byte, value 1, with
  // the fd), so a stock Python peer's recv_handle takes it; on shm a handle record in the
  // ring marks its place. Errors: kInvalidArgument (TCP, or fd < 0), kBadState (closed or
  // a reservation pending), send errors. sender thread.
  [[nodiscard]] Expected<void> send_handle(int fd);
  // Receives a descriptor sent with send_handle (or Python's send_handle); the caller owns
  // the returned fd (close-on-exec). kProtocolError if the next item is a message, not a
  // descriptor (the message stays: recv it). Other errors as recv_bytes. On shm, a message
  // receive that meets a descriptor gets kProtocolError and leaves it for recv_handle; on
  // the socket path (as between stock Python peers) the receiver must call recv_handle
  // when the descriptor is next. receiver thread.
  [[nodiscard]] Expected<int> recv_handle(Timeout timeout = kForever);

  // ---- event loops
  // An fd to wait on with select/poll/epoll (the control socket). Protocol:
  //   if (*conn.arm_fileno()) -> a message is ready, recv now;
  //   else wait until fileno() is readable, then disarm_fileno() and poll(0)/recv.
  // On the socket path fileno() readability is real socket readability. On shm, arming
  // tells the peer's sender to ring a 1-byte doorbell on the socket after its next commit;
  // unarmed senders make no system call. Readability can be spurious (always re-check
  // with poll(0)); EOF (peer closed or died) also makes it readable. receiver thread.
  int fileno() const noexcept;
  [[nodiscard]] Expected<bool> arm_fileno();
  void disarm_fileno() noexcept;

  // Marks end of stream (the peer's recv drains, then gets kClosed), stops reading (a
  // peer blocked sending gets kClosed) and closes the socket. Idempotent. not-thread-safe
  // (no concurrent send/recv).
  void close() noexcept;
  bool closed() const noexcept;

  struct Impl;

 private:
  friend class Listener;
  friend Expected<Connection> Client(const Address&, std::string_view, const ConnectionOptions&);
  explicit Connection(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class Listener {
 public:
  // Binds and listens. A Unix socket file left by a dead listener (connect() refused) is
  // replaced; a live one gives kAddressInUse, a non-socket file EADDRINUSE. TCP port 0
  // picks a free port (see address()). A TCP listener first removes ring segments that dead
  // TCP listeners left in /dev/shm (killed mid-handshake, see docs/RELIABILITY.md).
  // Errors: kInvalidAddress, kInvalidArgument (empty authkey, or a key given while
  // options.connection.authenticate is false), kAddressInUse, system errors.
  [[nodiscard]] static Expected<Listener> Create(const Address& address, std::string_view authkey,
                                                 const ListenerOptions& options = {});
  [[nodiscard]] static Expected<Listener> Create(std::string_view address, std::string_view authkey,
                                                 const ListenerOptions& options = {});
  Listener(Listener&&) noexcept;
  Listener& operator=(Listener&&) noexcept;
  ~Listener();

  // Waits for a client, authenticates it (both directions) and upgrades to shm if both
  // sides can. Errors: kTimedOut (no client within `timeout`), kPeerNotAllowed (uid; or
  // a remote TCP peer of an unauthenticated listener),
  // kAuthFailed/kAuthRejected (wrong key), kHandshakeTimeout, kProtocolError,
  // kMalformedFrame/kFrameTooLarge, kPeerDead (client vanished mid-handshake). After an
  // error the failed client's socket is closed and the listener is ready for the next.
  [[nodiscard]] Expected<Connection> accept(Timeout timeout = kForever);

  // The bound address (TCP: with the real port).
  const Address& address() const noexcept;
  // The peer of the last accepted connection (Python's last_accepted).
  const PeerInfo& last_accepted() const noexcept;
  // The listening socket (readable when a client is waiting).
  int fileno() const noexcept;
  // Stops listening and removes the socket file (if it is still ours: same inode, and
  // called in the process that created the listener, not a forked child). Idempotent.
  void close() noexcept;

  struct Impl;

 private:
  explicit Listener(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Connects and authenticates (answer, then deliver, like Python's Client); upgrades to
// shm with a shmlink server. options.authenticate = false: no handshake (authkey must be
// empty), as Python's Client(address) without an authkey. Errors: those of
// Listener::accept on the client side, plus connect() errors (ECONNREFUSED, ENOENT) in the
// system category.
[[nodiscard]] Expected<Connection> Client(const Address& address, std::string_view authkey,
                                          const ConnectionOptions& options = {});
[[nodiscard]] Expected<Connection> Client(std::string_view address, std::string_view authkey,
                                          const ConnectionOptions& options = {});

}  // namespace shmlink::transport

#endif  // SHMLINK_TRANSPORT_CONNECTION_H_
