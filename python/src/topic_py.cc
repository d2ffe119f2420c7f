// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Python binding of topics. One object per C++ handle; blocking calls release the GIL and
// wait in slices (signals run between slices, so Ctrl-C interrupts within ~50 ms).
//
// Zero copy: receive() returns a _TopicSample exporting a read-only buffer over the message
// in the mapping; the sample keeps the subscriber state (hence the mapping) alive, so a
// stale view never faults. The subscriber holds at most one message: the next receive
// releases it (an overrun then found is counted in `lost`); an explicit release() reports
// it (returns the number lost) so zero-copy readers learn their data may have been torn.
//
// fork(): handles are bound to the claiming process. A forked child never uses or
// destroys an inherited handle (that would release the parent's role): it is leaked.
#include "python/src/topic_py.h"

#include <pybind11/stl.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "python/src/channel.h"
#include "python/src/deadline.h"

#include <shmlink/topic.h>

namespace pyb = pybind11;

namespace shmlink::py {
namespace {

bool Is(const std::error_code& ec, RingErrc e) { return ec == make_error_code(e); }

// Runs try_fn, then (unless nowait) spins and waits in slices with wait_fn(opts), the GIL
// released, until it stops saying kWouldBlock or the deadline passes (kTimedOut).
template <typename TryFn, typename WaitFn>
auto SlicedCall(Timeout timeout, TryFn&& try_fn, WaitFn&& wait_fn) -> decltype(try_fn()) {
  Deadline deadline(timeout);
  const bool nowait = timeout && *timeout <= 0;
  auto r = try_fn();
  if (!r && Is(r.error(), RingErrc::kWouldBlock) && !nowait) {
    Py_BEGIN_ALLOW_THREADS;
    r = YieldSpin(try_fn, deadline.Left());
    Py_END_ALLOW_THREADS;
  }
  while (!r && Is(r.error(), RingErrc::kWouldBlock)) {
    auto slice = deadline.Slice();
    if (nowait || !slice) return RingErrc::kTimedOut;
    Py_BEGIN_ALLOW_THREADS;
    r = wait_fn(SliceOptions(*slice));
    Py_END_ALLOW_THREADS;
    if (!r && Is(r.error(), RingErrc::kTimedOut)) {
      r = RingErrc::kWouldBlock;
      if (PyErr_CheckSignals() != 0) ThrowPythonError();
    }
  }
  return r;
}

struct Unlock {
  std::timed_mutex& mu;
  ~Unlock() { mu.unlock(); }
};

// The Topic (mapping + name ownership); leaked in a forked child.
struct TopicOwner {
  std::unique_ptr<Topic> topic;
  uint64_t generation = ForkGeneration();
  explicit TopicOwner(Topic&& t) : topic(std::make_unique<Topic>(std::move(t))) {}
  ~TopicOwner() {
    if (generation != ForkGeneration()) (void)topic.release();
  }
};

class PyTopicPublisher {
 public:
  PyTopicPublisher(std::shared_ptr<TopicOwner> owner, TopicPublisher&& pub)
      : owner_(std::move(owner)), pub_(std::make_unique<TopicPublisher>(std::move(pub))) {}
  ~PyTopicPublisher() {
    if (generation_ != ForkGeneration()) (void)pub_.release();
  }

  uint64_t SendParts(const std::vector<pyb::buffer>& parts, Timeout timeout) {
    std::vector<pyb::buffer_info> infos;
    size_t total = 0;
    for (const auto& p : parts) {
      infos.push_back(p.request());
      total += static_cast<size_t>(infos.back().size * infos.back().itemsize);
    }
    LockWithSignals(mu_);
    Unlock unlock{mu_};
    TopicPublisher& pub = Get();
    auto r = SlicedCall(
        timeout, [&] { return pub.try_loan(total); },
        [&](const WaitOptions& o) { return pub.loan(total, o); });
    if (!r) RaiseRingError(r.error(), true);
    size_t at = 0;
    for (const auto& info : infos) {
      const size_t n = static_cast<size_t>(info.size * info.itemsize);
      if (n != 0) std::memcpy(r->data() + at, info.ptr, n);
      at += n;
    }
    auto seq = pub.publish();
    if (!seq) RaiseRingError(seq.error(), true);
    return *seq;
  }

  uint64_t NextSequence() {
    LockWithSignals(mu_);
    Unlock unlock{mu_};
    return Get().next_sequence();
  }

  void Close() {
    LockWithSignals(mu_);
    Unlock unlock{mu_};
    Get().close();
  }

  // Gives the role up (the stream is not closed).
  void Release() {
    LockWithSignals(mu_);
    Unlock unlock{mu_};
    if (generation_ != ForkGeneration()) (void)pub_.release();
    pub_.reset();
  }

 private:
  TopicPublisher& Get() {
    if (!pub_ || generation_ != ForkGeneration()) {
      PyErr_SetString(PyExc_OSError, "publisher handle is released (or inherited across fork)");
      ThrowPythonError();
    }
    return *pub_;
  }

  std::shared_ptr<TopicOwner> owner_;
  std::unique_ptr<TopicPublisher> pub_;
  uint64_t generation_ = ForkGeneration();
  std::timed_mutex mu_;
};

class PyTopicSubscriber;

// A received message in place (buffer protocol). Keeps the subscriber (and the mapping)
// alive.
struct PyTopicSample {
  std::shared_ptr<PyTopicSubscriber> owner;
  const std::byte* data = nullptr;
  size_t size = 0;
  uint64_t seq = 0;
};

class PyTopicSubscriber : public std::enable_shared_from_this<PyTopicSubscriber> {
 public:
  PyTopicSubscriber(std::shared_ptr<TopicOwner> owner, TopicSubscriber&& sub)
      : owner_(std::move(owner)), sub_(std::make_unique<TopicSubscriber>(std::move(sub))) {}
  ~PyTopicSubscriber() {
    if (generation_ != ForkGeneration()) (void)sub_.release();
  }

  // The next message in place (the previous one is released first; an overrun found then
  // is only counted). Overruns while waiting are counted and skipped.
  std::shared_ptr<PyTopicSample> Receive(Timeout timeout) {
    LockWithSignals(mu_);
    Unlock unlock{mu_};
    TopicSubscriber& sub = Get();
    (void)sub.release();
    auto r = ReceiveLocked(sub, timeout);
    auto s = std::make_shared<PyTopicSample>();
    s->owner = shared_from_this();
    s->data = r.data.data();
    s->size = r.data.size();
    s->seq = r.seq;
    return s;
  }

  // Copies the next message out; retries when the copy turns out to be torn.
  pyb::bytes RecvBytes(Timeout timeout) {
    LockWithSignals(mu_);
    Unlock unlock{mu_};
    TopicSubscriber& sub = Get();
    (void)sub.release();
    for (;;) {
      auto r = ReceiveLocked(sub, timeout);
      pyb::bytes out(reinterpret_cast<const char*>(r.data.data()), r.data.size());
      if (sub.release()) return out;
    }
  }

  // None if the held message (if any) was intact to the end; else the number of messages
  // lost (it included).
  std::optional<uint64_t> Release() {
    LockWithSignals(mu_);
    Unlock unlock{mu_};
    auto r = Get().release();
    if (r) return std::nullopt;
    if (!Is(r.error(), RingErrc::kOverrun)) RaiseRingError(r.error(), false);
    return Get().last_loss();
  }

  bool Poll(Timeout timeout) {
    LockWithSignals(mu_);
    Unlock unlock{mu_};
    TopicSubscriber& sub = Get();
    auto r = SlicedCall(
        timeout, [&] { return Peek(sub); },
        [&](const WaitOptions& o) {
          auto m = sub.receive(o);
          return m ? Expected<bool>(true) : Expected<bool>(MakeUnexpected(m.error()));
        });
    if (r) return true;
    if (Is(r.error(), RingErrc::kTimedOut)) return false;
    return true;  // end of stream / peer death: a receive would not block
  }

  int Fileno() {
    LockWithSignals(mu_);
    Unlock unlock{mu_};
    auto fd = Get().fd();
    if (!fd) RaiseRingError(fd.error(), false);
    return *fd;
  }

  uint64_t Lost() {
    return Locked([](TopicSubscriber& s) { return s.total_lost(); });
  }
  uint64_t LastLoss() {
    return Locked([](TopicSubscriber& s) { return s.last_loss(); });
  }
  uint64_t NextSequence() {
    return Locked([](TopicSubscriber& s) { return s.next_sequence(); });
  }

  void Close() {
    LockWithSignals(mu_);
    Unlock unlock{mu_};
    if (generation_ != ForkGeneration()) (void)sub_.release();
    sub_.reset();
  }

 private:
  template <typename F>
  uint64_t Locked(F&& f) {
    LockWithSignals(mu_);
    Unlock unlock{mu_};
    return f(Get());
  }

  static Expected<bool> Peek(TopicSubscriber& sub) {
    auto m = sub.try_receive();
    if (m) return true;
    return MakeUnexpected(m.error());
  }

  TopicSample ReceiveLocked(TopicSubscriber& sub, Timeout timeout) {
    for (;;) {
      auto r = SlicedCall(
          timeout, [&] { return sub.try_receive(); },
          [&](const WaitOptions& o) { return sub.receive(o); });
      if (r) return *r;
      if (Is(r.error(), RingErrc::kOverrun)) continue;  // counted in lost; go on
      RaiseRingError(r.error(), false);
    }
  }

  TopicSubscriber& Get() {
    if (!sub_ || generation_ != ForkGeneration()) {
      PyErr_SetString(PyExc_OSError, "subscriber handle is closed (or inherited across fork)");
      ThrowPythonError();
    }
    return *sub_;
  }

  std::shared_ptr<TopicOwner> owner_;
  std::unique_ptr<TopicSubscriber> sub_;
  uint64_t generation_ = ForkGeneration();
  std::timed_mutex mu_;
};

class PyTopic {
 public:
  static std::shared_ptr<PyTopic> Create(const std::string& name, uint64_t capacity,
                                         uint64_t max_message_size, uint32_t max_subscribers,
                                         uint64_t history, bool overwrite, uint32_t type_size,
                                         uint32_t type_align, uint64_t type_hash,
                                         bool unlink_on_close) {
    TopicOptions o;
    o.capacity = capacity;
    o.max_message_size = max_message_size;
    o.max_subscribers = max_subscribers;
    o.history = history;
    o.policy = overwrite ? TopicPolicy::kOverwrite : TopicPolicy::kBlock;
    o.type = TopicType{type_size, type_align, type_hash};
    o.unlink = unlink_on_close ? UnlinkPolicy::kUnlinkOnDestroy : UnlinkPolicy::kKeep;
    auto t = Topic::Create(name, o);
    if (!t) RaiseRingError(t.error(), false);
    return std::make_shared<PyTopic>(std::make_shared<TopicOwner>(std::move(*t)));
  }

  static std::shared_ptr<PyTopic> Attach(const std::string& name) {
    auto t = Topic::Attach(name);
    if (!t) RaiseRingError(t.error(), false);
    return std::make_shared<PyTopic>(std::make_shared<TopicOwner>(std::move(*t)));
  }

  explicit PyTopic(std::shared_ptr<TopicOwner> owner) : owner_(std::move(owner)) {}

  std::shared_ptr<PyTopicPublisher> Publisher() {
    auto p = topic().Publisher();
    if (!p) RaiseRingError(p.error(), true);
    return std::make_shared<PyTopicPublisher>(owner_, std::move(*p));
  }

  std::shared_ptr<PyTopicSubscriber> Subscriber() {
    auto s = topic().Subscriber();
    if (!s) RaiseRingError(s.error(), false);
    return std::make_shared<PyTopicSubscriber>(owner_, std::move(*s));
  }

  void Unlink() {
    auto r = topic().Unlink();
    if (!r) RaiseRingError(r.error(), false);
  }

  const Topic& topic() const { return *owner_->topic; }

 private:
  std::shared_ptr<TopicOwner> owner_;
};

}  // namespace

void RegisterTopicTypes(pyb::module_& m) {
  namespace a = pybind11;
  a::class_<PyTopicSample, std::shared_ptr<PyTopicSample>>(m, "_TopicSample", a::buffer_protocol())
      .def_buffer([](PyTopicSample& s) {
        return a::buffer_info(const_cast<std::byte*>(s.data), 1,
                              a::format_descriptor<uint8_t>::format(), 1,
                              {static_cast<a::ssize_t>(s.size)}, {a::ssize_t{1}},
                              /*readonly=*/true);
      })
      .def_readonly("seq", &PyTopicSample::seq)
      .def("__len__", [](const PyTopicSample& s) { return s.size; });

  a::class_<PyTopicPublisher, std::shared_ptr<PyTopicPublisher>>(m, "_TopicPublisher")
      .def("send_parts", &PyTopicPublisher::SendParts, a::arg("parts"),
           a::arg("timeout") = a::none())
      .def_property_readonly("next_sequence", &PyTopicPublisher::NextSequence)
      .def("close", &PyTopicPublisher::Close)
      .def("release", &PyTopicPublisher::Release);

  a::class_<PyTopicSubscriber, std::shared_ptr<PyTopicSubscriber>>(m, "_TopicSubscriber")
      .def("receive", &PyTopicSubscriber::Receive, a::arg("timeout") = a::none())
      .def("recv_bytes", &PyTopicSubscriber::RecvBytes, a::arg("timeout") = a::none())
      .def("release", &PyTopicSubscriber::Release)
      .def("poll", &PyTopicSubscriber::Poll, a::arg("timeout") = 0.0)
      .def("fileno", &PyTopicSubscriber::Fileno)
      .def_property_readonly("lost", &PyTopicSubscriber::Lost)
      .def_property_readonly("last_loss", &PyTopicSubscriber::LastLoss)
      .def_property_readonly("next_sequence", &PyTopicSubscriber::NextSequence)
      .def("close", &PyTopicSubscriber::Close);

  a::class_<PyTopic, std::shared_ptr<PyTopic>>(m, "_Topic")
      .def_static("create", &PyTopic::Create, a::arg("name"), a::arg("capacity"),
                  a::arg("max_message_size"), a::arg("max_subscribers"), a::arg("history"),
                  a::arg("overwrite"), a::arg("type_size"), a::arg("type_align"),
                  a::arg("type_hash"), a::arg("unlink_on_close"))
      .def_static("attach", &PyTopic::Attach, a::arg("name"))
      .def("publisher", &PyTopic::Publisher)
      .def("subscriber", &PyTopic::Subscriber)
      .def("unlink", &PyTopic::Unlink)
      .def_property_readonly("capacity", [](const PyTopic& t) { return t.topic().capacity(); })
      .def_property_readonly("max_message_size",
                             [](const PyTopic& t) { return t.topic().max_message_size(); })
      .def_property_readonly("max_subscribers",
                             [](const PyTopic& t) { return t.topic().max_subscribers(); })
      .def_property_readonly("history", [](const PyTopic& t) { return t.topic().history(); })
      .def_property_readonly(
          "overwrite",
          [](const PyTopic& t) { return t.topic().policy() == TopicPolicy::kOverwrite; })
      .def_property_readonly("type_size", [](const PyTopic& t) { return t.topic().type().size; })
      .def_property_readonly("type_align", [](const PyTopic& t) { return t.topic().type().align; })
      .def_property_readonly("type_hash", [](const PyTopic& t) { return t.topic().type().hash; })
      .def_property_readonly("subscriber_count",
                             [](const PyTopic& t) { return t.topic().subscriber_count(); })
      .def_property_readonly("published", [](const PyTopic& t) { return t.topic().published(); });

  m.def(
      "topic_type_hash", [](const std::string& name) { return TopicType::HashName(name); },
      a::arg("name"), "FNV-1a 64 hash of a type name, as recorded by typed C++ topics.");
}

}  // namespace shmlink::py
