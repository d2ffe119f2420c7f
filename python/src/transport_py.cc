// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// _Listener / _SocketConn: the extension classes behind shmlink.connection.Listener and
// Client (transport/connection.h). Same method shapes as _Channel (module.cc) so the
// Python Connection class serves both Pipe ends and socket connections.
//
// Blocking receives and accepts wait in 50 ms slices with the GIL released and run
// Python's signal handlers between slices (Ctrl-C within ~100 ms). A send blocks only
// while the peer's ring or socket buffer is full, with the GIL released.
// One thread may send while another receives (two locks), as the C++ Connection allows.
#include "python/src/transport_py.h"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "python/src/channel.h"
#include "python/src/decode_view.h"

#include <shmlink/connection.h>
#include <shmlink/transport_error.h>

namespace pyb = pybind11;

namespace shmlink::py {
namespace {

using transport::TransportErrc;
using Clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kSlice{50};

[[noreturn]] void Throw() { throw pyb::error_already_set(); }

bool Is(const std::error_code& ec, TransportErrc e) { return ec == make_error_code(e); }

[[noreturn]] void RaiseTransportError(std::error_code ec, bool sending) {
  if (ec.category() != transport::TransportCategory()) RaiseRingError(ec, sending);
  std::string msg = ec.message();
  PyObject* type = PyExc_OSError;
  pyb::object auth;
  switch (static_cast<TransportErrc>(ec.value())) {
    case TransportErrc::kAuthFailed:
    case TransportErrc::kAuthRejected: {
      auth = pyb::module_::import("multiprocessing").attr("AuthenticationError");
      type = auth.ptr();
      break;
    }
    case TransportErrc::kClosed:
    case TransportErrc::kPeerDead:
      type = sending ? PyExc_BrokenPipeError : PyExc_EOFError;
      break;
    case TransportErrc::kTimedOut:
    case TransportErrc::kWouldBlock:
    case TransportErrc::kHandshakeTimeout:
      type = PyExc_TimeoutError;
      break;
    case TransportErrc::kInvalidAddress:
    case TransportErrc::kInvalidArgument:
    case TransportErrc::kTooLarge:
      type = PyExc_ValueError;
      break;
    case TransportErrc::kAddressInUse: {
      PyObject* args = Py_BuildValue("(is)", EADDRINUSE, msg.c_str());
      PyErr_SetObject(PyExc_OSError, args);
      Py_XDECREF(args);
      Throw();
    }
    case TransportErrc::kBadState:
      msg = "handle is closed";
      break;
    case TransportErrc::kPeerNotAllowed:
      type = PyExc_PermissionError;
      break;
    default:
      type = PyExc_OSError;
  }
  PyErr_SetString(type, msg.c_str());
  Throw();
}

transport::Timeout ToNs(std::chrono::nanoseconds d) { return d; }

// Runs `call(slice)` (a transport call taking a timeout) in slices until it returns
// anything but kTimedOut or the total `timeout` expires.
template <typename Call>
auto Sliced(Timeout timeout, Call&& call) -> decltype(call(transport::Timeout{})) {
  using R = decltype(call(transport::Timeout{}));
  const bool infinite = !timeout.has_value();
  const auto deadline =
      infinite ? Clock::time_point::max()
               : Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(std::max(0.0, *timeout)));
  bool first = true;
  for (;;) {
    std::chrono::nanoseconds slice = kSlice;
    if (!infinite) {
      auto left = deadline - Clock::now();
      if (left < Clock::duration::zero()) left = Clock::duration::zero();
      if (left == Clock::duration::zero() && !first) return R(TransportErrc::kTimedOut);
      slice = std::min<std::chrono::nanoseconds>(slice, left);
    }
    first = false;
    R r = TransportErrc::kTimedOut;
    Py_BEGIN_ALLOW_THREADS;
    r = call(ToNs(slice));
    Py_END_ALLOW_THREADS;
    if (r || !Is(r.error(), TransportErrc::kTimedOut)) return r;
    if (PyErr_CheckSignals() != 0) Throw();
    if (!infinite && Clock::now() >= deadline) return r;
  }
}

struct BufferView {
  Py_buffer view{};
  BufferView(pyb::handle obj, bool writable) {
    if (PyObject_GetBuffer(obj.ptr(), &view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) != 0)
      Throw();
  }
  ~BufferView() { PyBuffer_Release(&view); }
  BufferView(const BufferView&) = delete;
  BufferView& operator=(const BufferView&) = delete;
};

struct Locked {
  std::timed_mutex& mu;
  explicit Locked(std::timed_mutex& m) : mu(m) { LockWithSignals(mu); }
  ~Locked() { mu.unlock(); }
};

class SocketConn {
 public:
  explicit SocketConn(transport::Connection&& c)
      : conn_(std::make_unique<transport::Connection>(std::move(c))) {}
  ~SocketConn() {
    // Bound to its process: a forked child never closes (or unmaps) the parent's.
    if (generation_ != ForkGeneration()) (void)conn_.release();
  }

  void SendBytes(pyb::handle data, Py_ssize_t offset, std::optional<Py_ssize_t> size,
                 Timeout /*timeout*/) {
    BufferView v(data, false);
    if (offset < 0 || offset > v.view.len) throw pyb::value_error("offset is out of range");
    Py_ssize_t n = size ? *size : v.view.len - offset;
    if (n < 0 || offset + n > v.view.len) throw pyb::value_error("size is out of range");
    Locked lock(send_mu_);
    Check();
    Expected<void> r;
    std::span<const std::byte> msg(static_cast<const std::byte*>(v.view.buf) + offset,
                                   static_cast<size_t>(n));
    Py_BEGIN_ALLOW_THREADS;
    r = conn_->send_bytes(msg);
    Py_END_ALLOW_THREADS;
    if (!r) RaiseTransportError(r.error(), true);
  }

  pyb::bytes RecvBytes(std::optional<Py_ssize_t> maxlength, Timeout timeout) {
    Locked lock(recv_mu_);
    auto msg = Peek(timeout);
    if (maxlength && static_cast<Py_ssize_t>(msg.size()) > *maxlength) {
      conn_->release();
      PyErr_SetString(PyExc_OSError, "bad message length");
      Throw();
    }
    pyb::bytes b(reinterpret_cast<const char*>(msg.data()), msg.size());
    conn_->release();
    return b;
  }

  pyb::tuple RecvBytesInto(pyb::handle buffer, Py_ssize_t offset, Timeout timeout) {
    BufferView v(buffer, true);
    if (offset < 0 || offset > v.view.len) throw pyb::value_error("offset is out of range");
    Locked lock(recv_mu_);
    auto msg = Peek(timeout);
    const auto n = static_cast<Py_ssize_t>(msg.size());
    if (n > v.view.len - offset) {
      pyb::bytes copy(reinterpret_cast<const char*>(msg.data()), msg.size());
      conn_->release();
      return pyb::make_tuple(n, copy);
    }
    std::memcpy(static_cast<char*>(v.view.buf) + offset, msg.data(), msg.size());
    conn_->release();
    return pyb::make_tuple(n, pyb::none());
  }

  // decode(memoryview over the message in place); the view is released before the
  // message is (so it can never outlive the bytes).
  pyb::object RecvDecode(pyb::object decode, Timeout timeout) {
    Locked lock(recv_mu_);
    auto msg = Peek(timeout);
    PyObject* result = DecodeView(decode.ptr(), msg);
    conn_->release();
    if (result == nullptr) Throw();
    return pyb::reinterpret_steal<pyb::object>(result);
  }

  bool Poll(Timeout timeout) {
    Locked lock(recv_mu_);
    Check();
    if (timeout && *timeout <= 0) {
      auto r = conn_->poll(transport::Timeout{0});
      if (!r) RaiseTransportError(r.error(), false);
      return *r;
    }
    auto r = Sliced(timeout, [&](transport::Timeout t) -> Expected<bool> {
      auto p = conn_->poll(t);
      if (p && !*p) return TransportErrc::kTimedOut;
      return p;
    });
    if (!r) {
      if (Is(r.error(), TransportErrc::kTimedOut)) return false;
      RaiseTransportError(r.error(), false);
    }
    return *r;
  }

  void SendHandle(int fd) {
    Locked lock(send_mu_);
    Check();
    Expected<void> r;
    Py_BEGIN_ALLOW_THREADS;
    r = conn_->send_handle(fd);
    Py_END_ALLOW_THREADS;
    if (!r) RaiseTransportError(r.error(), true);
  }

  int RecvHandle(Timeout timeout) {
    Locked lock(recv_mu_);
    Check();
    auto r = (timeout && *timeout <= 0)
                 ? conn_->recv_handle(transport::Timeout{0})
                 : Sliced(timeout, [&](transport::Timeout t) { return conn_->recv_handle(t); });
    if (!r) {
      if (Is(r.error(), TransportErrc::kProtocolError)) {
        // As multiprocessing's recvfds on anything but a descriptor.
        PyErr_SetString(PyExc_RuntimeError, "Invalid data received (not a file descriptor)");
        Throw();
      }
      RaiseTransportError(r.error(), false);
    }
    return *r;
  }

  int Fileno() const { return conn_->fileno(); }
  bool ArmFileno() {
    Locked lock(recv_mu_);
    Check();
    auto r = conn_->arm_fileno();
    if (!r) RaiseTransportError(r.error(), false);
    return *r;
  }
  void DisarmFileno() {
    Locked lock(recv_mu_);
    conn_->disarm_fileno();
  }

  void Close() {
    Locked a(send_mu_);
    Locked b(recv_mu_);
    if (generation_ == ForkGeneration()) conn_->close();
  }
  bool closed() const { return conn_->closed(); }
  bool is_shm() const { return conn_->is_shm(); }
  bool peer_is_shmlink() const { return conn_->peer_is_shmlink(); }
  uint64_t max_message_size() const { return conn_->max_message_size(); }

 private:
  void Check() {
    if (generation_ != ForkGeneration()) {
      PyErr_SetString(PyExc_OSError,
                      "a shmlink socket connection cannot be used in a forked child");
      Throw();
    }
    if (conn_->closed()) {
      PyErr_SetString(PyExc_OSError, "handle is closed");
      Throw();
    }
  }

  std::span<const std::byte> Peek(Timeout timeout) {
    Check();
    auto r = (timeout && *timeout <= 0)
                 ? conn_->peek(transport::Timeout{0})
                 : Sliced(timeout, [&](transport::Timeout t) { return conn_->peek(t); });
    if (!r) RaiseTransportError(r.error(), false);
    return *r;
  }

  std::unique_ptr<transport::Connection> conn_;
  uint64_t generation_ = ForkGeneration();
  std::timed_mutex send_mu_;
  std::timed_mutex recv_mu_;
};

transport::ConnectionOptions Options(bool shm, uint64_t ring_capacity, bool legacy,
                                     bool authenticate) {
  transport::ConnectionOptions o;
  o.authenticate = authenticate;
  o.enable_shm = shm;
  o.auth.advertise_shmlink = shm;
  if (legacy) o.auth.dialect = transport::AuthDialect::kLegacy;
  if (ring_capacity != 0) o.ring_capacity = ring_capacity;
  return o;
}

pyb::object AddressToPython(const transport::Address& a) {
  if (a.family == transport::AddressFamily::kTcp) return pyb::make_tuple(a.host, a.port);
  if (a.family == transport::AddressFamily::kUnixAbstract)
    return pyb::str(std::string(1, '\0') + a.path);
  return pyb::str(a.path);
}

class ListenerImpl {
 public:
  static std::shared_ptr<ListenerImpl> Create(const std::string& address,
                                              const std::string& authkey, bool shm,
                                              uint64_t ring_capacity, int backlog, bool legacy,
                                              bool authenticate, bool allow_remote) {
    transport::ListenerOptions o;
    o.connection = Options(shm, ring_capacity, legacy, authenticate);
    o.allow_remote_unauthenticated = allow_remote;
    if (backlog > 0) o.backlog = backlog;
    auto l = transport::Listener::Create(address, authkey, o);
    if (!l) RaiseTransportError(l.error(), false);
    return std::make_shared<ListenerImpl>(std::move(*l));
  }
  explicit ListenerImpl(transport::Listener&& l)
      : l_(std::make_unique<transport::Listener>(std::move(l))) {}
  ~ListenerImpl() {
    if (generation_ != ForkGeneration()) (void)l_.release();
  }

  std::shared_ptr<SocketConn> Accept(Timeout timeout) {
    Locked lock(mu_);
    auto r = Sliced(timeout, [&](transport::Timeout t) { return l_->accept(t); });
    if (!r) RaiseTransportError(r.error(), false);
    return std::make_shared<SocketConn>(std::move(*r));
  }
  pyb::object address() const { return AddressToPython(l_->address()); }
  pyb::object last_accepted() const {
    const auto& p = l_->last_accepted();
    if (p.address.family == transport::AddressFamily::kTcp && !p.address.host.empty())
      return AddressToPython(p.address);
    if (!p.address.path.empty()) return AddressToPython(p.address);
    return pyb::none();
  }
  int peer_pid() const { return l_->last_accepted().pid; }
  int fileno() const { return l_->fileno(); }
  void Close() {
    if (generation_ == ForkGeneration()) l_->close();
  }

 private:
  std::unique_ptr<transport::Listener> l_;
  uint64_t generation_ = ForkGeneration();
  std::timed_mutex mu_;
};

std::shared_ptr<SocketConn> Connect(const std::string& address, const std::string& authkey,
                                    bool shm, bool legacy, bool authenticate) {
  auto o = Options(shm, 0, legacy, authenticate);
  Expected<transport::Connection> r = TransportErrc::kTimedOut;
  Py_BEGIN_ALLOW_THREADS;
  r = transport::Client(address, authkey, o);
  Py_END_ALLOW_THREADS;
  if (!r) RaiseTransportError(r.error(), false);
  return std::make_shared<SocketConn>(std::move(*r));
}

}  // namespace

void RegisterTransportTypes(pybind11::module_& m) {
  namespace a = pybind11;
  a::class_<SocketConn, std::shared_ptr<SocketConn>>(m, "_SocketConn")
      .def("send_bytes", &SocketConn::SendBytes, a::arg("data"), a::arg("offset") = 0,
           a::arg("size") = a::none(), a::arg("timeout") = a::none())
      .def("recv_bytes", &SocketConn::RecvBytes, a::arg("maxlength") = a::none(),
           a::arg("timeout") = a::none())
      .def("recv_bytes_into", &SocketConn::RecvBytesInto, a::arg("buffer"), a::arg("offset") = 0,
           a::arg("timeout") = a::none())
      .def("recv_decode", &SocketConn::RecvDecode, a::arg("decode"), a::arg("timeout") = a::none())
      .def("poll", &SocketConn::Poll, a::arg("timeout") = 0.0)
      .def("send_handle", &SocketConn::SendHandle, a::arg("fd"))
      .def("recv_handle", &SocketConn::RecvHandle, a::arg("timeout") = a::none())
      .def("fileno", &SocketConn::Fileno)
      .def("arm_fileno", &SocketConn::ArmFileno)
      .def("disarm_fileno", &SocketConn::DisarmFileno)
      .def("close", &SocketConn::Close)
      .def_property_readonly("closed", &SocketConn::closed)
      .def_property_readonly("is_shm", &SocketConn::is_shm)
      .def_property_readonly("peer_is_shmlink", &SocketConn::peer_is_shmlink)
      .def_property_readonly("max_message_size", &SocketConn::max_message_size);

  a::class_<ListenerImpl, std::shared_ptr<ListenerImpl>>(m, "_Listener")
      .def_static("create", &ListenerImpl::Create, a::arg("address"), a::arg("authkey"),
                  a::arg("shm") = true, a::arg("ring_capacity") = 0, a::arg("backlog") = 0,
                  a::arg("legacy") = false, a::arg("authenticate") = true,
                  a::arg("allow_remote_unauthenticated") = false)
      .def("accept", &ListenerImpl::Accept, a::arg("timeout") = a::none())
      .def("close", &ListenerImpl::Close)
      .def("fileno", &ListenerImpl::fileno)
      .def_property_readonly("address", &ListenerImpl::address)
      .def_property_readonly("last_accepted", &ListenerImpl::last_accepted)
      .def_property_readonly("last_peer_pid", &ListenerImpl::peer_pid);

  m.def("_connect", &Connect, a::arg("address"), a::arg("authkey"), a::arg("shm") = true,
        a::arg("legacy") = false, a::arg("authenticate") = true);
}

}  // namespace shmlink::py
