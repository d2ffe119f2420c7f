// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// _SharedObject: the extension class behind shmlink.Value/Array and their get_lock()
// (<shmlink/shared_object.h>). The bytes are exported through the buffer protocol, so the
// Python side maps ctypes objects onto them in place; the robust lock recovers from a
// holder that died (owner_died reports it once).
//
// fork(): a child never unlocks or unmaps what it inherited from its parent: the handle and
// any held guard are leaked in the child (compared by fork generation).
#include "python/src/shared_object_py.h"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>  // std::optional timeouts

#include <cstdint>
#include <memory>
#include <string>

#include "python/src/channel.h"
#include "python/src/deadline.h"

#include <shmlink/shared_object.h>

namespace shmlink::py {
namespace {

bool Is(const std::error_code& ec, RingErrc e) { return ec == make_error_code(e); }

// Value/Array storage: a SharedObject whose robust lock backs get_lock().
class ObjectImpl {
 public:
  static std::shared_ptr<ObjectImpl> Create(const std::string& name, size_t size,
                                            uint64_t elem_size, uint64_t tag) {
    SharedObject::CreateOptions o;
    o.unlink = UnlinkPolicy::kKeep;
    o.elem_size = elem_size;
    o.type_tag = tag;
    auto obj = SharedObject::Create(name, size, o);
    if (!obj) RaiseRingError(obj.error(), false);
    return std::make_shared<ObjectImpl>(std::move(*obj));
  }
  static std::shared_ptr<ObjectImpl> Attach(const std::string& name) {
    auto obj = SharedObject::Attach(name);
    if (!obj) RaiseRingError(obj.error(), false);
    return std::make_shared<ObjectImpl>(std::move(*obj));
  }
  explicit ObjectImpl(SharedObject&& o) : obj_(std::make_unique<SharedObject>(std::move(o))) {}
  ~ObjectImpl() {
    if (generation_ != ForkGeneration()) {
      (void)guard_.release();  // never unlock the parent's lock from a child
      (void)obj_.release();
    }
  }

  // Acquires the robust lock (blocking per timeout; Ctrl-C interrupts). Returns False on
  // timeout, True when held. A dead previous owner is recovered (kAutoRecover).
  bool Lock(Timeout timeout) {
    if (guard_ && guard_generation_ == ForkGeneration()) {
      PyErr_SetString(PyExc_RuntimeError, "lock already held by this handle");
      ThrowPythonError();
    }
    if (guard_) (void)guard_.release();  // inherited across fork: not ours
    auto g = obj_->try_lock(LockRecovery::kAutoRecover);
    if (!g && Is(g.error(), RingErrc::kWouldBlock)) {
      if (timeout && *timeout <= 0) return false;
      Deadline deadline(timeout);
      for (;;) {
        auto slice = deadline.Slice();
        if (!slice) return false;
        Py_BEGIN_ALLOW_THREADS;
        g = obj_->lock_for(*slice, LockRecovery::kAutoRecover);
        Py_END_ALLOW_THREADS;
        if (g || !Is(g.error(), RingErrc::kTimedOut)) break;
        CheckSignals();
      }
    }
    if (!g) RaiseRingError(g.error(), false);
    owner_died_ = g->owner_died();
    guard_ = std::make_unique<SharedObject::Guard>(std::move(*g));
    guard_generation_ = ForkGeneration();
    return true;
  }

  void Unlock() {
    if (!guard_ || guard_generation_ != ForkGeneration()) {
      PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
      ThrowPythonError();
    }
    guard_.reset();
  }

  bool owner_died() const { return owner_died_; }
  uint64_t type_tag() const { return obj_->type_tag(); }
  uint64_t elem_size() const { return obj_->elem_size(); }
  size_t size() const { return obj_->size(); }
  std::byte* data() const { return obj_->data(); }
  void Unlink() { (void)obj_->Unlink(); }

 private:
  std::unique_ptr<SharedObject> obj_;
  uint64_t generation_ = ForkGeneration();
  // Held guard: the lock belongs to the thread that took it; Python's RLock-like layer
  // (shmlink._sync) makes sure the same thread unlocks.
  std::unique_ptr<SharedObject::Guard> guard_;
  uint64_t guard_generation_ = 0;
  bool owner_died_ = false;
};

}  // namespace

void RegisterSharedObjectType(pybind11::module_& m) {
  namespace a = pybind11;
  a::class_<ObjectImpl, std::shared_ptr<ObjectImpl>>(m, "_SharedObject", a::buffer_protocol())
      .def_static("create", &ObjectImpl::Create, a::arg("name"), a::arg("size"),
                  a::arg("elem_size"), a::arg("type_tag"))
      .def_static("attach", &ObjectImpl::Attach, a::arg("name"))
      .def("lock", &ObjectImpl::Lock, a::arg("timeout") = a::none())
      .def("unlock", &ObjectImpl::Unlock)
      .def("unlink", &ObjectImpl::Unlink)
      .def_property_readonly("owner_died", &ObjectImpl::owner_died)
      .def_property_readonly("type_tag", &ObjectImpl::type_tag)
      .def_property_readonly("elem_size", &ObjectImpl::elem_size)
      .def_property_readonly("size", &ObjectImpl::size)
      .def_buffer([](ObjectImpl& o) {
        return a::buffer_info(o.data(), 1, a::format_descriptor<uint8_t>::format(), 1,
                              {static_cast<ssize_t>(o.size())}, {ssize_t{1}},
                              /*readonly=*/false);
      });
}

}  // namespace shmlink::py
