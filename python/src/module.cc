// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// shmlink._shmlink: the CPython extension behind the `shmlink` package. It wraps the C++
// rings (ringbuf/); the Python-facing API (Ring, Pipe, ...) lives in shmlink/__init__.py
// on top of the one class here, _Channel: an optional receive side and an optional send
// side of SPSC rings, in a named segment (Ring) or an anonymous memfd segment (Pipe).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "python/src/channel.h"
#include "python/src/decode_view.h"
#include "python/src/message.h"
#include "python/src/queue.h"
#include "python/src/shared_object_py.h"
#include "python/src/topic_py.h"
#include "python/src/transport_py.h"

#include <shmlink/segment.h>
#include <shmlink/segment_header.h>
#include <shmlink/spsc_layout.h>
#include <shmlink/spsc_ring.h>

namespace pyb = pybind11;

namespace shmlink::py {
namespace {

// Bigger copies run with the GIL released.
constexpr size_t kCopyWithoutGil = 64 * 1024;

// Pipe segments keep two doorbell words in the page padding between the control blocks
// and the data rings (header 256 B + 2 x 512 B control; data starts at 4096).
constexpr size_t kBellOffset = 2048;

// Large Pipe messages. A message longer than a Pipe's inline maximum (ring maximum - 64)
// travels in a memfd segment (size-sealed; reused by the sender once the receiver gave it
// back, see MapMessage) whose fd goes over the Pipe's socketpair (SCM_RIGHTS, with
// {id, size}); the ring then carries a marker record of exactly the ring's maximum
// size, which no inline message can have: {kLargeMagic, id, size}. The receiver meets the
// marker in order, consumes it and raises _LargeMessage(id, size); the Python layer takes
// the fd from the socket and maps it (shmlink.connection).
constexpr uint64_t kLargeMagic = 0x314749424c4d4853;  // "SHMLBIG1"
constexpr size_t kLargeInlineMargin = 64;
constexpr size_t kLargeSegmentHeader = 64;  // in-use word, then padding (see MapMessage)
PyObject* g_large_message = nullptr;        // the _LargeMessage exception type

void CopyMaybeNoGil(void* dst, const void* src, size_t n) {
  if (n >= kCopyWithoutGil) {
    Py_BEGIN_ALLOW_THREADS;
    std::memcpy(dst, src, n);
    Py_END_ALLOW_THREADS;
  } else if (n != 0) {
    std::memcpy(dst, src, n);
  }
}

// Owns a segment-owning object; in a forked child it is leaked, never destroyed, so the
// child neither unlinks the parent's name nor releases anything of the parent's.
template <typename T>
struct ForkSafeOwner {
  std::unique_ptr<T> obj;
  uint64_t generation = ForkGeneration();
  explicit ForkSafeOwner(T&& t) : obj(std::make_unique<T>(std::move(t))) {}
  ~ForkSafeOwner() {
    if (generation != ForkGeneration()) (void)obj.release();
  }
};

struct BufferView {
  Py_buffer view{};
  bool held = false;
  BufferView(pyb::handle obj, bool writable) {
    if (PyObject_GetBuffer(obj.ptr(), &view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) != 0)
      throw pyb::error_already_set();
    held = true;
  }
  ~BufferView() {
    if (held) PyBuffer_Release(&view);
  }
  BufferView(const BufferView&) = delete;
  BufferView& operator=(const BufferView&) = delete;
};

class Channel {
 public:
  static std::shared_ptr<Channel> CreateRing(const std::string& name, uint64_t capacity,
                                             bool unlink_on_close) {
    SpscRing::CreateOptions opts;
    opts.unlink = unlink_on_close ? UnlinkPolicy::kUnlinkOnDestroy : UnlinkPolicy::kKeep;
    auto ring = SpscRing::Create(name, capacity, opts);
    if (!ring) RaiseRingError(ring.error(), false);
    auto ch = FromRing(std::move(*ring), name);
    ch->owns_name_ = unlink_on_close;
    return ch;
  }

  static std::shared_ptr<Channel> AttachRing(const std::string& name) {
    auto ring = SpscRing::Attach(name);
    if (!ring) RaiseRingError(ring.error(), false);
    return FromRing(std::move(*ring), name);
  }

  // A Pipe end over a segment made by CreatePipeSegment. `fd` is duplicated. rx/tx: ring
  // index (0 or 1) or -1 for none; efds: doorbell eventfds (rx: ours, tx: the peer's).
  static std::shared_ptr<Channel> OpenPipe(int fd, int rx, int tx, int rx_efd, int tx_efd,
                                           int hup_fd) {
    int own = ::dup(fd);
    if (own < 0) RaiseRingError(std::error_code(errno, std::system_category()), false);
    auto seg = Segment::FromFd(own);
    if (!seg) RaiseRingError(seg.error(), false);
    auto shared = std::make_shared<Segment>(std::move(*seg));
    auto g = ValidateSpscSegment(*shared, SegmentKind::kConnection, 2);
    if (!g) RaiseRingError(g.error(), false);
    if (SpscRegionAt(*shared, *g, 0).data - shared->data() <
        static_cast<ptrdiff_t>(kBellOffset + 128)) {
      RaiseRingError(make_error_code(RingErrc::kBadGeometry), false);
    }
    auto ch = std::make_shared<Channel>();
    auto owner =
        std::make_shared<ForkSafeOwner<std::shared_ptr<Segment>>>(std::shared_ptr<Segment>(shared));
    ch->mapping_ = {reinterpret_cast<uintptr_t>(shared->data()), shared->size()};
    // Per ring: the doorbell word, and at +4 its `enabled` flag (channel.h, Bell).
    auto word_at = [&](int index, size_t extra) {
      return reinterpret_cast<std::atomic<uint32_t>*>(shared->data() + kBellOffset +
                                                      64 * static_cast<size_t>(index) + extra);
    };
    auto bell = [&](int index, int efd) { return Bell{word_at(index, 0), word_at(index, 4), efd}; };
    std::shared_ptr<const Segment> cseg = shared;
    SpscGeometry geo = *g;
    if (rx >= 0) {
      ch->rx_ = std::make_shared<RxState>();
      ch->rx_->claim = [cseg, geo, rx]() {
        return SpscConsumer::Claim(cseg, SpscRegionAt(*cseg, geo, rx));
      };
      ch->rx_->bell = bell(rx, rx_efd);
      ch->rx_->hup_fd = hup_fd;
      ch->rx_->keepalive = owner;
    }
    if (tx >= 0) {
      ch->tx_ = std::make_shared<TxState>();
      ch->tx_->claim = [cseg, geo, tx]() {
        return SpscProducer::Claim(cseg, SpscRegionAt(*cseg, geo, tx));
      };
      ch->tx_->bell = bell(tx, tx_efd);
      ch->tx_->hup_fd = hup_fd;
      ch->tx_->consumer_owner = &SpscRegionAt(*shared, geo, tx).control->consumer_owner;
      ch->tx_->keepalive = owner;
    }
    ch->max_message_size_ = SpscMaxMessageSize(geo.capacity) - kLargeInlineMargin;
    ch->capacity_ = geo.capacity;
    ch->pipe_ = true;
    return ch;
  }

  // Creates an anonymous (memfd) segment with two rings; returns a new fd the caller owns.
  static int CreatePipeSegment(uint64_t capacity) {
    auto size = SpscSegmentSize(2, capacity);
    if (!size) RaiseRingError(size.error(), false);
    auto seg = Segment::CreateAnonymous(*size);
    if (!seg) RaiseRingError(seg.error(), false);
    InitSpscSegment(*seg, SegmentKind::kConnection, 2, capacity);
    int fd = ::dup(seg->fd());
    if (fd < 0) RaiseRingError(std::error_code(errno, std::system_category()), false);
    return fd;
  }

  // --- sending -------------------------------------------------------------------------
  void SendParts(const std::vector<pyb::object>& parts, Timeout timeout) {
    std::vector<std::unique_ptr<BufferView>> views;
    size_t total = 0;
    for (const auto& p : parts) {
      views.push_back(std::make_unique<BufferView>(p, false));
      total += static_cast<size_t>(views.back()->view.len);
    }
    CheckInline(total);
    TxLock lock(Tx());
    auto buf = lock.Reserve(total, timeout);
    size_t at = 0;
    for (auto& v : views) {
      CopyMaybeNoGil(buf.data() + at, v->view.buf, static_cast<size_t>(v->view.len));
      at += static_cast<size_t>(v->view.len);
    }
    lock.Commit();
  }

  void SendBytes(pyb::handle data, Py_ssize_t offset, std::optional<Py_ssize_t> size,
                 Timeout timeout) {
    BufferView v(data, false);
    if (offset < 0 || offset > v.view.len) throw pyb::value_error("offset is out of range");
    Py_ssize_t n = size ? *size : v.view.len - offset;
    if (n < 0 || offset + n > v.view.len) throw pyb::value_error("size is out of range");
    CheckInline(static_cast<size_t>(n));
    TxLock lock(Tx());
    auto buf = lock.Reserve(static_cast<size_t>(n), timeout);
    CopyMaybeNoGil(buf.data(), static_cast<const char*>(v.view.buf) + offset,
                   static_cast<size_t>(n));
    lock.Commit();
  }

  // Pipe: commits the marker of a large message whose memfd was sent on the socketpair.
  void SendLargeMarker(uint64_t id, uint64_t size) {
    if (!pipe_) throw pyb::value_error("large messages travel on Pipe connections only");
    TxLock lock(Tx());
    auto buf = lock.Reserve(lock.producer().max_message_size(), std::nullopt);
    const uint64_t words[3] = {kLargeMagic, id, size};
    std::memcpy(buf.data(), words, sizeof(words));
    lock.Commit();
  }

  // Pipe: maps the memfd of a large message as a Message that owns the mapping. Segment
  // layout: a 64-byte header whose first u32 is the in-use word (the sender set it to 1;
  // the Message sets it to 0 when given back, and the sender may then reuse the segment),
  // then the message. `fd` stays the caller's. populate: fault every page in now (for a
  // copy that follows); a zero-copy view leaves that to the reader's first touch.
  static pyb::object MapMessage(int fd, uint64_t size, bool populate) {
    struct stat st {};
    const uint64_t need = kLargeSegmentHeader + size;
    if (::fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) < need || size == 0) {
      throw pyb::value_error("large message segment is smaller than its announced size");
    }
    void* p = MAP_FAILED;
    Py_BEGIN_ALLOW_THREADS;
    p = ::mmap(nullptr, need, PROT_READ | PROT_WRITE, MAP_SHARED | (populate ? MAP_POPULATE : 0),
               fd, 0);
    Py_END_ALLOW_THREADS;
    if (p == MAP_FAILED) RaiseRingError(std::error_code(errno, std::system_category()), false);
    auto* base = static_cast<std::byte*>(p);
    PyObject* m = NewMappedMessage(p, need, base + kLargeSegmentHeader, size,
                                   reinterpret_cast<std::atomic<uint32_t>*>(base));
    if (m == nullptr) throw pyb::error_already_set();
    return pyb::reinterpret_steal<pyb::object>(m);
  }

  // Ends the stream: the reader drains what was sent, then gets EOFError.
  void CloseTx() {
    if (!tx_) return;
    LockWithSignals(tx_->mu);
    // Only a role this process claimed is closed: another process's copy of this end (e.g.
    // the parent's copy of a child's Pipe end) must not end the child's stream. An end
    // that never sent signals EOF through the hang-up socket when its last copy closes.
    const bool ours = tx_->producer && tx_->generation == ForkGeneration();
    if (!tx_->closed && ours) {
      tx_->producer->close();
      if (tx_->bell.word != nullptr) {
        // SYNC(bell): wake a selector on the reader's fd so it sees the end of stream.
        tx_->bell.word->store(1, std::memory_order_seq_cst);
        (void)::eventfd_write(tx_->bell.efd, 1);
      }
      tx_->producer.reset();
    }
    tx_->closed = true;
    tx_->mu.unlock();
  }

  // --- receiving -----------------------------------------------------------------------
  pyb::bytes RecvBytes(std::optional<Py_ssize_t> maxlength, Timeout timeout) {
    RxLock lock(Rx());
    auto msg = lock.Peek(timeout);
    CheckLarge(lock, msg);
    if (maxlength && static_cast<Py_ssize_t>(msg.size()) > *maxlength) {
      lock.Consume(false);  // as multiprocessing: the message is dropped
      PyErr_SetString(PyExc_OSError, "bad message length");
      throw pyb::error_already_set();
    }
    PyObject* b = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(msg.size()));
    if (b == nullptr) throw pyb::error_already_set();
    CopyMaybeNoGil(PyBytes_AS_STRING(b), msg.data(), msg.size());
    lock.Consume(false);
    return pyb::reinterpret_steal<pyb::bytes>(b);
  }

  // Returns (size, None) or, if `buffer` is too small, (size, bytes) with the message.
  pyb::tuple RecvBytesInto(pyb::handle buffer, Py_ssize_t offset, Timeout timeout) {
    BufferView v(buffer, true);
    if (offset < 0 || offset > v.view.len) throw pyb::value_error("offset is out of range");
    RxLock lock(Rx());
    auto msg = lock.Peek(timeout);
    CheckLarge(lock, msg);
    const auto n = static_cast<Py_ssize_t>(msg.size());
    if (n > v.view.len - offset) {
      pyb::bytes copy(reinterpret_cast<const char*>(msg.data()), msg.size());
      lock.Consume(false);
      return pyb::make_tuple(n, copy);
    }
    CopyMaybeNoGil(static_cast<char*>(v.view.buf) + offset, msg.data(), msg.size());
    lock.Consume(false);
    return pyb::make_tuple(n, pyb::none());
  }

  // Zero copy: a Message over the bytes in the ring.
  pyb::object RecvView(Timeout timeout, bool pinned) {
    RxLock lock(Rx());
    auto msg = lock.Peek(timeout);
    CheckLarge(lock, msg);
    lock.Consume(true);
    PyObject* m = NewMessage(rx_, msg, pinned);
    if (m == nullptr) {
      rx_->outstanding.fetch_sub(1, std::memory_order_release);
      throw pyb::error_already_set();
    }
    return pyb::reinterpret_steal<pyb::object>(m);
  }

  // decode(memoryview over the message in place); the view is released before the ring
  // space is, so it can never outlive the bytes.
  pyb::object RecvDecode(pyb::object decode, Timeout timeout) {
    RxLock lock(Rx());
    auto msg = lock.Peek(timeout);
    CheckLarge(lock, msg);
    PyObject* result = DecodeView(decode.ptr(), msg);
    lock.Consume(false);
    if (result == nullptr) throw pyb::error_already_set();
    return pyb::reinterpret_steal<pyb::object>(result);
  }

  bool Poll(Timeout timeout) {
    RxLock lock(Rx());
    return lock.Poll(timeout);
  }

  // First fileno() of a Pipe end: switch its doorbell on.
  void EnableBell() {
    RxLock lock(Rx());
    lock.EnableBell();
  }

  // A named Ring's fileno(): the consumer's eventfd (claims the consumer role, like the
  // first receive). Owned by the consumer handle: closed when the receiving side is.
  int ConsumerFd() {
    RxLock lock(Rx());
    return lock.ConsumerFd();
  }

  void CloseRx() {
    if (!rx_) return;
    LockWithSignals(rx_->mu);
    if (!rx_->closed) {
      if (rx_->consumer && rx_->generation == ForkGeneration()) {
        // SpscConsumer::close() frees every advanced message: wait for the last live
        // zero-copy message (RxState::MaybeRelease performs the deferred close).
        rx_->peek_pending = false;
        rx_->close_pending = true;
        rx_->MaybeRelease();
      }
      rx_->closed = true;
    }
    rx_->mu.unlock();
  }

  void Close() {
    CloseTx();
    CloseRx();
    // The creator owns the name: close() removes it (explicit, never behind its back).
    if (owns_name_ && name_generation_ == shmlink::py::ForkGeneration() && ring_ != nullptr) {
      (void)ring_->Unlink();
      owns_name_ = false;
    }
  }

  void Unlink() {
    if (!ring_) throw pyb::value_error("not a named ring");
    auto r = ring_->Unlink();
    if (!r) RaiseRingError(r.error(), false);
  }

  uint64_t capacity() const { return capacity_; }
  uint64_t max_message_size() const { return max_message_size_; }
  pyb::tuple mapping() const { return pyb::make_tuple(mapping_.first, mapping_.second); }
  int outstanding() const { return rx_ ? rx_->outstanding.load() : 0; }

 private:
  static std::shared_ptr<Channel> FromRing(SpscRing&& ring, const std::string& name) {
    auto ch = std::make_shared<Channel>();
    auto owner = std::make_shared<ForkSafeOwner<SpscRing>>(std::move(ring));
    SpscRing* r = owner->obj.get();
    ch->ring_ = r;
    ch->ring_owner_ = owner;
    ch->name_ = name;
    ch->capacity_ = r->capacity();
    ch->max_message_size_ = r->max_message_size();
    ch->mapping_ = {reinterpret_cast<uintptr_t>(r->segment().data()), r->segment().size()};
    ch->rx_ = std::make_shared<RxState>();
    ch->rx_->claim = [r]() { return r->Consumer(); };
    ch->rx_->keepalive = owner;
    ch->tx_ = std::make_shared<TxState>();
    ch->tx_->claim = [r]() { return r->Producer(); };
    ch->tx_->keepalive = owner;
    return ch;
  }

  RxState& Rx() {
    if (!rx_) throw pyb::value_error("this end cannot receive");
    return *rx_;
  }

  void CheckInline(size_t n) const {
    if (pipe_ && n > max_message_size_) {
      PyErr_Format(PyExc_ValueError, "message of %zu bytes exceeds the inline maximum of %llu", n,
                   static_cast<unsigned long long>(max_message_size_));
      throw pyb::error_already_set();
    }
  }

  // A large-message marker (see kLargeMagic): consumed here, reported as _LargeMessage.
  void CheckLarge(RxLock& lock, std::span<const std::byte> msg) {
    if (!pipe_ || msg.size() <= max_message_size_) return;
    uint64_t words[3] = {0, 0, 0};
    std::memcpy(words, msg.data(), sizeof(words));
    lock.Consume(false);
    if (words[0] != kLargeMagic) {
      PyErr_SetString(PyExc_OSError, "corrupt Pipe message (bad large-message marker)");
      throw pyb::error_already_set();
    }
    PyObject* args = Py_BuildValue("(KK)", static_cast<unsigned long long>(words[1]),
                                   static_cast<unsigned long long>(words[2]));
    if (args != nullptr) {
      PyErr_SetObject(g_large_message, args);
      Py_DECREF(args);
    }
    throw pyb::error_already_set();
  }
  TxState& Tx() {
    if (!tx_) throw pyb::value_error("this end cannot send");
    return *tx_;
  }

  std::shared_ptr<RxState> rx_;
  std::shared_ptr<TxState> tx_;
  bool pipe_ = false;         // a Pipe end: large messages are markers (kLargeMagic)
  SpscRing* ring_ = nullptr;  // named rings only; owned by ring_owner_
  std::shared_ptr<void> ring_owner_;
  std::string name_;
  bool owns_name_ = false;
  uint64_t name_generation_ = ForkGeneration();
  uint64_t capacity_ = 0;
  uint64_t max_message_size_ = 0;
  std::pair<uintptr_t, size_t> mapping_{0, 0};
};

}  // namespace
}  // namespace shmlink::py

PYBIND11_MODULE(_shmlink, m) {
  using shmlink::py::Channel;
  using shmlink::py::Timeout;
  namespace a = pybind11;
  m.doc() = "shmlink C++ core (internal; use the shmlink package)";
  shmlink::py::InstallForkHandler();
  if (shmlink::py::RegisterMessageType(m.ptr()) != 0) throw a::error_already_set();
  shmlink::py::RegisterQueueTypes(m);
  shmlink::py::RegisterSharedObjectType(m);
  shmlink::py::RegisterTransportTypes(m);
  shmlink::py::g_large_message =
      PyErr_NewException("shmlink._shmlink._LargeMessage", PyExc_Exception, nullptr);
  if (shmlink::py::g_large_message == nullptr) throw a::error_already_set();
  m.attr("_LargeMessage") = a::handle(shmlink::py::g_large_message);
  shmlink::py::RegisterTopicTypes(m);
  m.def(
      "set_spin",
      [](double seconds) {
        if (!(seconds >= 0 && seconds <= 1)) throw a::value_error("spin must be in [0, 1] s");
        shmlink::py::SetSpin(std::chrono::nanoseconds(static_cast<int64_t>(seconds * 1e9)));
      },
      a::arg("seconds"),
      "Process-wide: how long blocking Ring/Pipe/Queue calls spin before sleeping.");

  a::class_<Channel, std::shared_ptr<Channel>>(m, "_Channel")
      .def_static("create_ring", &Channel::CreateRing, a::arg("name"), a::arg("capacity"),
                  a::arg("unlink_on_close") = true)
      .def_static("attach_ring", &Channel::AttachRing, a::arg("name"))
      .def_static("open_pipe", &Channel::OpenPipe, a::arg("fd"), a::arg("rx"), a::arg("tx"),
                  a::arg("rx_efd"), a::arg("tx_efd"), a::arg("hup_fd"))
      .def_static("create_pipe_segment", &Channel::CreatePipeSegment, a::arg("capacity"))
      .def("send_parts", &Channel::SendParts, a::arg("parts"), a::arg("timeout") = a::none())
      .def("send_bytes", &Channel::SendBytes, a::arg("data"), a::arg("offset") = 0,
           a::arg("size") = a::none(), a::arg("timeout") = a::none())
      .def("recv_bytes", &Channel::RecvBytes, a::arg("maxlength") = a::none(),
           a::arg("timeout") = a::none())
      .def("recv_bytes_into", &Channel::RecvBytesInto, a::arg("buffer"), a::arg("offset") = 0,
           a::arg("timeout") = a::none())
      .def("recv_view", &Channel::RecvView, a::arg("timeout") = a::none(), a::arg("pinned") = false)
      .def("recv_decode", &Channel::RecvDecode, a::arg("decode"), a::arg("timeout") = a::none())
      .def("poll", &Channel::Poll, a::arg("timeout") = 0.0)
      .def("enable_bell", &Channel::EnableBell)
      .def("consumer_fd", &Channel::ConsumerFd)
      .def("send_large_marker", &Channel::SendLargeMarker, a::arg("id"), a::arg("size"))
      .def_static("map_message", &Channel::MapMessage, a::arg("fd"), a::arg("size"),
                  a::arg("populate") = true)
      .def("close_tx", &Channel::CloseTx)
      .def("close_rx", &Channel::CloseRx)
      .def("close", &Channel::Close)
      .def("unlink", &Channel::Unlink)
      .def_property_readonly("capacity", &Channel::capacity)
      .def_property_readonly("max_message_size", &Channel::max_message_size)
      .def_property_readonly("mapping", &Channel::mapping)
      .def_property_readonly("outstanding", &Channel::outstanding);
}
