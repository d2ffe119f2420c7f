// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// _Queue: the extension class behind shmlink.Queue/JoinableQueue/SimpleQueue
// (<shmlink/mpmc_queue.h>).
//
// A queue is two named segments: the MPMC queue `name`, and `name.ctl`, a SharedObject
// whose bytes hold the counters multiprocessing's API needs and MpmcQueue does not keep:
//   u32 count       items put and not yet got (exact qsize; maxsize is enforced on it)
//   u32 unfinished  JoinableQueue: items put and not yet task_done()
//   u32 maxsize     0 = unbounded (bounded only by the slot count)
//   u32 magic
// count and unfinished are futex words: a put waiting for room sleeps on count, join()
// sleeps on unfinished; they are woken only on the transitions that matter (full -> not
// full, 1 -> 0), so the steady path makes no system call.
#include "python/src/queue.h"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "python/src/channel.h"
#include "python/src/deadline.h"
#include "python/src/decode_view.h"

#include <shmlink/futex.h>
#include <shmlink/mpmc_queue.h>
#include <shmlink/shared_object.h>

namespace pyb = pybind11;

namespace shmlink::py {
namespace {

constexpr uint32_t kCtlMagic = 0x51554555;  // "QUEU"

struct QueueCtl {
  std::atomic<uint32_t> count;
  std::atomic<uint32_t> unfinished;
  std::atomic<uint32_t> maxsize;
  std::atomic<uint32_t> magic;
};

bool Is(const std::error_code& ec, RingErrc e) { return ec == make_error_code(e); }

// Waits while *word == value, one slice, GIL released.
void FutexSlice(std::atomic<uint32_t>* word, uint32_t value, std::chrono::nanoseconds d) {
  Py_BEGIN_ALLOW_THREADS;
  (void)FutexWait(word, value, d);
  Py_END_ALLOW_THREADS;
}

template <typename Handle>
struct HandleSlot {
  std::timed_mutex mu;
  std::unique_ptr<Handle> handle;
  uint64_t generation = 0;
  ~HandleSlot() {
    if (generation != ForkGeneration()) (void)handle.release();  // the parent's
  }
};

template <typename Handle, typename Make>
Handle& Acquire(HandleSlot<Handle>& slot, Make&& make) {
  if (!slot.handle || slot.generation != ForkGeneration()) {
    if (slot.handle) (void)slot.handle.release();
    auto h = make();
    if (!h) RaiseRingError(h.error(), false);
    slot.handle = std::make_unique<Handle>(std::move(*h));
    slot.generation = ForkGeneration();
  }
  return *slot.handle;
}

struct Unlocker {
  std::timed_mutex& mu;
  ~Unlocker() { mu.unlock(); }
};

class QueueImpl {
 public:
  static std::shared_ptr<QueueImpl> Create(const std::string& name, uint64_t slots,
                                           uint64_t slot_size, uint32_t maxsize,
                                           bool unlink_on_close) {
    MpmcQueue::CreateOptions qo;
    qo.unlink = UnlinkPolicy::kKeep;  // unlinked explicitly (Unlink) by the creator only
    auto q = MpmcQueue::Create(name, slots, slot_size, qo);
    if (!q) RaiseRingError(q.error(), false);
    SharedObject::CreateOptions oo;
    oo.unlink = UnlinkPolicy::kKeep;
    oo.type_tag = kCtlMagic;
    auto ctl = SharedObject::Create(name + ".ctl", sizeof(QueueCtl), oo);
    if (!ctl) {
      (void)q->Unlink();
      RaiseRingError(ctl.error(), false);
    }
    auto impl = std::make_shared<QueueImpl>(std::move(*q), std::move(*ctl), name);
    impl->ctl()->maxsize.store(maxsize, std::memory_order_relaxed);
    // SYNC(ctl-magic): release; attachers acquire it before trusting maxsize.
    impl->ctl()->magic.store(kCtlMagic, std::memory_order_release);
    impl->owns_name_ = unlink_on_close;
    return impl;
  }

  static std::shared_ptr<QueueImpl> Attach(const std::string& name) {
    auto q = MpmcQueue::Attach(name);
    if (!q) RaiseRingError(q.error(), false);
    auto ctl = SharedObject::Attach(name + ".ctl");
    if (!ctl) RaiseRingError(ctl.error(), false);
    if (ctl->type_tag() != kCtlMagic || ctl->size() < sizeof(QueueCtl)) {
      RaiseRingError(make_error_code(RingErrc::kWrongKind), false);
    }
    auto impl = std::make_shared<QueueImpl>(std::move(*q), std::move(*ctl), name);
    if (impl->ctl()->magic.load(std::memory_order_acquire) != kCtlMagic) {
      RaiseRingError(make_error_code(RingErrc::kNotReady), false);
    }
    return impl;
  }

  QueueImpl(MpmcQueue&& q, SharedObject&& ctl, std::string name)
      : queue_(std::make_unique<MpmcQueue>(std::move(q))),
        ctl_obj_(std::make_unique<SharedObject>(std::move(ctl))),
        name_(std::move(name)) {}

  ~QueueImpl() {
    if (generation_ != ForkGeneration()) {
      (void)queue_.release();
      (void)ctl_obj_.release();
    }
  }

  // Puts one message made of `parts`. Raises TimeoutError when it could not within the
  // timeout (the Python layer maps it to queue.Full). `task`: count it for join().
  void Put(const std::vector<pyb::object>& parts, Timeout timeout, bool task) {
    std::vector<Py_buffer> views(parts.size());
    size_t held = 0;
    struct Release {
      std::vector<Py_buffer>& v;
      size_t& n;
      ~Release() {
        for (size_t i = 0; i < n; ++i) PyBuffer_Release(&v[i]);
      }
    } release{views, held};
    std::vector<std::span<const std::byte>> spans;
    for (const auto& p : parts) {
      if (PyObject_GetBuffer(p.ptr(), &views[held], PyBUF_SIMPLE) != 0) ThrowPythonError();
      spans.emplace_back(static_cast<const std::byte*>(views[held].buf),
                         static_cast<size_t>(views[held].len));
      ++held;
    }
    PutSpans(spans, timeout, task);
  }

  // Fast path of Queue.put: bytes pass through (tag 0), anything else is pickled with
  // `dumps` (tag 1). Returns False, having put nothing, if the message does not fit a
  // slot (the Python layer then spills it).
  bool PutObject(pyb::handle obj, pyb::handle dumps, Timeout timeout, bool task) {
    static const std::byte kTagBytes{0}, kTagPickle{1};
    pyb::object encoded;
    Py_buffer view{};
    const std::byte* tag = &kTagBytes;
    if (!PyBytes_CheckExact(obj.ptr())) {
      encoded = pyb::reinterpret_steal<pyb::object>(PyObject_CallOneArg(dumps.ptr(), obj.ptr()));
      if (!encoded) ThrowPythonError();
      obj = encoded;
      tag = &kTagPickle;
    }
    if (PyObject_GetBuffer(obj.ptr(), &view, PyBUF_SIMPLE) != 0) ThrowPythonError();
    struct Release {
      Py_buffer* v;
      ~Release() { PyBuffer_Release(v); }
    } release{&view};
    if (static_cast<uint64_t>(view.len) + 1 > queue_->max_message_size()) return false;
    std::span<const std::byte> spans[2] = {
        {tag, 1}, {static_cast<const std::byte*>(view.buf), static_cast<size_t>(view.len)}};
    PutSpans(spans, timeout, task);
    return true;
  }

  void PutSpans(std::span<const std::span<const std::byte>> spans, Timeout timeout, bool task) {
    size_t total = 0;
    for (const auto& sp : spans) total += sp.size();
    if (total > queue_->max_message_size()) {
      PyErr_Format(PyExc_ValueError, "message of %zu bytes exceeds the slot size %llu", total,
                   static_cast<unsigned long long>(queue_->max_message_size()));
      ThrowPythonError();
    }
    Deadline deadline(timeout);
    const bool nowait = timeout && *timeout <= 0;
    QueueCtl* c = ctl();
    const uint32_t maxsize = c->maxsize.load(std::memory_order_relaxed);
    // 1. A ticket under maxsize (count is the exact qsize).
    for (;;) {
      uint32_t n = c->count.load(std::memory_order_seq_cst);
      if (maxsize == 0 || n < maxsize) {
        // SYNC(count): seq_cst RMW; pairs with the getter's fetch_sub + wake below.
        if (c->count.compare_exchange_weak(n, n + 1, std::memory_order_seq_cst)) break;
        continue;
      }
      auto slice = deadline.Slice();
      if (nowait || !slice) RaiseRingError(make_error_code(RingErrc::kTimedOut), true);
      FutexSlice(&c->count, n, *slice);
      CheckSignals();
    }
    if (task) c->unfinished.fetch_add(1, std::memory_order_seq_cst);
    auto undo = [&] {
      UndoTicket();
      if (task) DoneTask(false);
    };
    // 2. A slot.
    LockWithSignals(producer_.mu);
    Unlocker unlock{producer_.mu};
    MpmcProducer* p;
    try {
      p = &Acquire(producer_, [&] { return queue_->Producer(); });
    } catch (...) {
      undo();
      throw;
    }
    auto r = p->try_claim(total);
    if (!r && Is(r.error(), RingErrc::kWouldBlock) && !nowait) {
      Py_BEGIN_ALLOW_THREADS;
      r = YieldSpin([&] { return p->try_claim(total); }, deadline.Left());
      Py_END_ALLOW_THREADS;
    }
    while (!r && Is(r.error(), RingErrc::kWouldBlock)) {
      auto slice = deadline.Slice();
      if (nowait || !slice) {
        undo();
        RaiseRingError(make_error_code(RingErrc::kTimedOut), true);
      }
      Py_BEGIN_ALLOW_THREADS;
      r = p->claim(total, SliceOptions(*slice));
      Py_END_ALLOW_THREADS;
      if (!r && Is(r.error(), RingErrc::kTimedOut)) {
        r = RingErrc::kWouldBlock;
        if (PyErr_CheckSignals() != 0) {
          undo();
          ThrowPythonError();
        }
      }
    }
    if (!r) {
      undo();
      RaiseRingError(r.error(), true);
    }
    size_t at = 0;
    for (const auto& sp : spans) {
      if (!sp.empty()) std::memcpy(r->data() + at, sp.data(), sp.size());
      at += sp.size();
    }
    auto pub = p->publish();
    if (!pub) {
      undo();
      RaiseRingError(pub.error(), true);
    }
  }

  // Gets one message and returns decode(memoryview over it); the view is released (and
  // the slot freed) when decode returns. Raises TimeoutError (-> queue.Empty).
  pyb::object Get(pyb::object decode, Timeout timeout, pyb::object loads) {
    Deadline deadline(timeout);
    const bool nowait = timeout && *timeout <= 0;
    LockWithSignals(consumer_.mu);
    Unlocker unlock{consumer_.mu};
    MpmcConsumer& c = Acquire(consumer_, [&] { return queue_->Consumer(); });
    auto r = c.try_claim();
    if (!r && Is(r.error(), RingErrc::kWouldBlock) && !nowait) {
      Py_BEGIN_ALLOW_THREADS;
      r = YieldSpin([&] { return c.try_claim(); }, deadline.Left());
      Py_END_ALLOW_THREADS;
    }
    while (!r && Is(r.error(), RingErrc::kWouldBlock)) {
      auto slice = deadline.Slice();
      if (nowait || !slice) RaiseRingError(make_error_code(RingErrc::kTimedOut), false);
      Py_BEGIN_ALLOW_THREADS;
      r = c.claim(SliceOptions(*slice));
      Py_END_ALLOW_THREADS;
      if (!r && Is(r.error(), RingErrc::kTimedOut)) {
        r = RingErrc::kWouldBlock;
        CheckSignals();
      }
    }
    if (!r) RaiseRingError(r.error(), false);
    UndoTicket();
    const std::byte* data = r->data.data();
    const size_t size = r->data.size();
    // Fast paths: raw bytes (tag 0) and pickles (tag 1); anything else goes to decode.
    if (size >= 1 && data[0] == std::byte{0}) {
      PyObject* b = PyBytes_FromStringAndSize(reinterpret_cast<const char*>(data) + 1,
                                              static_cast<Py_ssize_t>(size - 1));
      (void)c.release();
      if (b == nullptr) ThrowPythonError();
      return pyb::reinterpret_steal<pyb::object>(b);
    }
    const bool pickled = size >= 1 && data[0] == std::byte{1} && loads;
    const size_t skip = pickled ? 1 : 0;
    PyObject* result = DecodeView(pickled ? loads.ptr() : decode.ptr(), r->data.subspan(skip));
    (void)c.release();  // the view is gone (DecodeView reports a decode that kept it)
    if (result == nullptr) ThrowPythonError();
    return pyb::reinterpret_steal<pyb::object>(result);
  }

  void TaskDone() { DoneTask(true); }

  // Counts an item for join() before it reaches the queue (a put waiting in the
  // feeder's buffer; the feeder then puts it with task = false).
  void BeginTask() {
    // SYNC(unfinished): seq_cst, as the fetch_add of a put with task = true.
    ctl()->unfinished.fetch_add(1, std::memory_order_seq_cst);
  }

  void Join(Timeout timeout) {
    Deadline deadline(timeout);
    QueueCtl* c = ctl();
    for (;;) {
      uint32_t n = c->unfinished.load(std::memory_order_seq_cst);
      if (n == 0) return;
      auto slice = deadline.Slice();
      if (!slice) RaiseRingError(make_error_code(RingErrc::kTimedOut), false);
      FutexSlice(&c->unfinished, n, *slice);
      CheckSignals();
    }
  }

  uint32_t qsize() { return ctl()->count.load(std::memory_order_seq_cst); }
  uint32_t maxsize() { return ctl()->maxsize.load(std::memory_order_relaxed); }
  uint32_t unfinished() { return ctl()->unfinished.load(std::memory_order_seq_cst); }
  uint64_t slot_size() const { return queue_->max_message_size(); }
  uint64_t slot_count() const { return queue_->capacity(); }
  pyb::dict Stats() const {
    MpmcStats s = queue_->stats();
    pyb::dict d;
    d["pushes"] = s.pushes;
    d["pops"] = s.pops;
    d["abandoned"] = s.abandoned;
    d["redelivered"] = s.redelivered;
    d["size"] = s.size;
    d["capacity"] = s.capacity;
    d["producers"] = s.producers;
    d["consumers"] = s.consumers;
    return d;
  }

  // Removes both names (creator's explicit action). Idempotent.
  void Unlink() {
    if (unlinked_) return;
    unlinked_ = true;
    (void)queue_->Unlink();
    (void)ctl_obj_->Unlink();
  }
  bool owns_name() const { return owns_name_ && generation_ == ForkGeneration(); }

  // Drops this process's handles (their registry entries) now.
  void Close() {
    LockWithSignals(producer_.mu);
    if (producer_.generation == ForkGeneration()) producer_.handle.reset();
    producer_.mu.unlock();
    LockWithSignals(consumer_.mu);
    if (consumer_.generation == ForkGeneration()) consumer_.handle.reset();
    consumer_.mu.unlock();
  }

 private:
  QueueCtl* ctl() const { return reinterpret_cast<QueueCtl*>(ctl_obj_->data()); }

  void UndoTicket() {
    QueueCtl* c = ctl();
    const uint32_t maxsize = c->maxsize.load(std::memory_order_relaxed);
    // SYNC(count): seq_cst; a putter that saw the queue full sleeps on count == old.
    uint32_t old = c->count.fetch_sub(1, std::memory_order_seq_cst);
    if (maxsize != 0 && old >= maxsize) (void)FutexWake(&c->count, INT_MAX);
  }

  void DoneTask(bool user_call) {
    QueueCtl* c = ctl();
    uint32_t n = c->unfinished.load(std::memory_order_seq_cst);
    for (;;) {
      if (n == 0) {
        if (!user_call) return;
        PyErr_SetString(PyExc_ValueError, "task_done() called too many times");
        ThrowPythonError();
      }
      if (c->unfinished.compare_exchange_weak(n, n - 1, std::memory_order_seq_cst)) break;
    }
    if (n == 1) (void)FutexWake(&c->unfinished, INT_MAX);
  }

  std::unique_ptr<MpmcQueue> queue_;
  std::unique_ptr<SharedObject> ctl_obj_;
  std::string name_;
  uint64_t generation_ = ForkGeneration();
  bool owns_name_ = false;
  bool unlinked_ = false;
  HandleSlot<MpmcProducer> producer_;
  HandleSlot<MpmcConsumer> consumer_;
};

}  // namespace

void RegisterQueueTypes(pybind11::module_& m) {
  namespace a = pybind11;
  a::class_<QueueImpl, std::shared_ptr<QueueImpl>>(m, "_Queue")
      .def_static("create", &QueueImpl::Create, a::arg("name"), a::arg("slots"),
                  a::arg("slot_size"), a::arg("maxsize"), a::arg("unlink_on_close") = true)
      .def_static("attach", &QueueImpl::Attach, a::arg("name"))
      .def("put", &QueueImpl::Put, a::arg("parts"), a::arg("timeout") = a::none(),
           a::arg("task") = false)
      .def("get", &QueueImpl::Get, a::arg("decode"), a::arg("timeout") = a::none(),
           a::arg("loads") = a::none())
      .def("put_object", &QueueImpl::PutObject, a::arg("obj"), a::arg("dumps"),
           a::arg("timeout") = a::none(), a::arg("task") = false)
      .def("task_done", &QueueImpl::TaskDone)
      .def("begin_task", &QueueImpl::BeginTask)
      .def("join", &QueueImpl::Join, a::arg("timeout") = a::none())
      .def("qsize", &QueueImpl::qsize)
      .def("stats", &QueueImpl::Stats)
      .def("unlink", &QueueImpl::Unlink)
      .def("close", &QueueImpl::Close)
      .def_property_readonly("owns_name", &QueueImpl::owns_name)
      .def_property_readonly("maxsize", &QueueImpl::maxsize)
      .def_property_readonly("unfinished", &QueueImpl::unfinished)
      .def_property_readonly("slot_size", &QueueImpl::slot_size)
      .def_property_readonly("slot_count", &QueueImpl::slot_count);
}

}  // namespace shmlink::py
