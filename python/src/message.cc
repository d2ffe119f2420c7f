// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "python/src/message.h"

#include <structmember.h>
#include <sys/mman.h>

#include <new>

namespace shmlink::py {
namespace {

struct MessageObject {
  PyObject_HEAD std::shared_ptr<RxState>*
      state;  // heap-allocated so the C struct stays POD-initialised
  const std::byte* data;
  Py_ssize_t size;
  Py_ssize_t exports;  // live buffer exports (PEP 3118)
  PyObject* view;      // memoryview handed out by __enter__, or nullptr
  bool invalid;        // release() was called: no new exports
  bool returned;       // ring space handed back to the state
  bool pinned;
  void* map_base;                       // owned mapping (large Pipe message), or nullptr
  size_t mapped;                        // its length
  std::atomic<uint32_t>* release_word;  // in the mapping: set to 0 when given back
};

void GiveBack(MessageObject* m) {
  if (m->returned) return;
  if (m->map_base != nullptr) {
    m->returned = true;
    // SYNC(large-release): release; pairs with the sender's acquire check before it
    // rewrites the segment: every read of the message happened before.
    if (m->release_word != nullptr) m->release_word->store(0, std::memory_order_release);
    ::munmap(m->map_base, m->mapped);
    return;
  }
  if (m->state == nullptr) return;
  m->returned = true;
  RxState& s = **m->state;
  // SYNC(outstanding): release pairs with the acquire load in RxState::MaybeRelease.
  s.outstanding.fetch_sub(1, std::memory_order_release);
  // Free the space now if no receive is running; otherwise the receiving thread does it
  // (it re-checks between wait slices and at the start of every receive).
  // The busy hint keeps a thread from try_lock()ing a mutex it already holds (a message
  // can die inside a receive, e.g. from a signal handler or the cyclic GC).
  if (!s.busy.load(std::memory_order_relaxed) && s.mu.try_lock()) {
    if (s.generation == ForkGeneration()) s.MaybeRelease();
    s.mu.unlock();
  }
}

int Message_getbuffer(PyObject* self, Py_buffer* view, int flags) {
  auto* m = reinterpret_cast<MessageObject*>(self);
  if (m->invalid) {
    PyErr_SetString(PyExc_BufferError, "shmlink.Message was released: its bytes are gone");
    view->obj = nullptr;
    return -1;
  }
  if (PyBuffer_FillInfo(view, self, const_cast<std::byte*>(m->data), m->size, /*readonly=*/1,
                        flags) != 0) {
    return -1;
  }
  ++m->exports;
  return 0;
}

void Message_releasebuffer(PyObject* self, Py_buffer*) {
  auto* m = reinterpret_cast<MessageObject*>(self);
  if (--m->exports == 0 && m->invalid) GiveBack(m);
}

PyBufferProcs message_as_buffer = {Message_getbuffer, Message_releasebuffer};

void Message_dealloc(PyObject* self) {
  auto* m = reinterpret_cast<MessageObject*>(self);
  Py_CLEAR(m->view);
  GiveBack(m);
  delete m->state;
  m->state = nullptr;
  Py_TYPE(self)->tp_free(self);
}

// Marks the message released; gives the space back once no export remains.
int DoRelease(MessageObject* m) {
  if (m->view != nullptr) {
    PyObject* r = PyObject_CallMethod(m->view, "release", nullptr);
    if (r == nullptr) {
      // The memoryview is itself exported (e.g. memoryview(mv) is alive): its exports keep
      // our buffer, so the space is given back when they go.
      if (!PyErr_ExceptionMatches(PyExc_BufferError)) return -1;
      PyErr_Clear();
    }
    Py_XDECREF(r);
    Py_CLEAR(m->view);
  }
  m->invalid = true;
  if (m->exports == 0) GiveBack(m);
  return 0;
}

PyObject* Message_release(PyObject* self, PyObject*) {
  auto* m = reinterpret_cast<MessageObject*>(self);
  if (m->pinned) {
    PyErr_SetString(PyExc_ValueError,
                    "this message backs a NumPy array; it is released when the array dies");
    return nullptr;
  }
  if (DoRelease(m) != 0) return nullptr;
  Py_RETURN_NONE;
}

PyObject* Message_enter(PyObject* self, PyObject*) {
  auto* m = reinterpret_cast<MessageObject*>(self);
  if (m->invalid) {
    PyErr_SetString(PyExc_ValueError, "shmlink.Message was released");
    return nullptr;
  }
  if (m->view == nullptr) {
    m->view = PyMemoryView_FromObject(self);
    if (m->view == nullptr) return nullptr;
  }
  Py_INCREF(m->view);
  return m->view;
}

PyObject* Message_exit(PyObject* self, PyObject*) {
  auto* m = reinterpret_cast<MessageObject*>(self);
  if (!m->pinned && DoRelease(m) != 0) return nullptr;
  Py_RETURN_FALSE;
}

PyObject* Message_tobytes(PyObject* self, PyObject*) {
  auto* m = reinterpret_cast<MessageObject*>(self);
  if (m->invalid) {
    PyErr_SetString(PyExc_ValueError, "shmlink.Message was released");
    return nullptr;
  }
  return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(m->data), m->size);
}

Py_ssize_t Message_len(PyObject* self) { return reinterpret_cast<MessageObject*>(self)->size; }

PyObject* Message_get_released(PyObject* self, void*) {
  return PyBool_FromLong(reinterpret_cast<MessageObject*>(self)->invalid);
}

PyObject* Message_get_address(PyObject* self, void*) {
  return PyLong_FromVoidPtr(const_cast<std::byte*>(reinterpret_cast<MessageObject*>(self)->data));
}

PyMethodDef message_methods[] = {
    {"release", Message_release, METH_NOARGS,
     "Give the ring space back (deferred while buffers exported earlier are alive)."},
    {"tobytes", Message_tobytes, METH_NOARGS, "A copy of the message as bytes."},
    {"__enter__", Message_enter, METH_NOARGS, "A read-only memoryview on the message."},
    {"__exit__", Message_exit, METH_VARARGS, "Releases the memoryview and the message."},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef message_getset[] = {
    {"released", Message_get_released, nullptr, "True after release().", nullptr},
    {"address", Message_get_address, nullptr, "Address of the first byte (for tests).", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PySequenceMethods message_as_sequence = {Message_len};

PyTypeObject MessageType = [] {
  PyTypeObject t{PyVarObject_HEAD_INIT(nullptr, 0)};
  t.tp_name = "shmlink._shmlink.Message";
  t.tp_basicsize = sizeof(MessageObject);
  t.tp_dealloc = Message_dealloc;
  t.tp_as_buffer = &message_as_buffer;
  t.tp_as_sequence = &message_as_sequence;
  t.tp_flags = Py_TPFLAGS_DEFAULT;
  t.tp_doc = "A received message in place in shared memory (see Ring.recv_view).";
  t.tp_methods = message_methods;
  t.tp_getset = message_getset;
  return t;
}();

}  // namespace

int RegisterMessageType(PyObject* module) {
  if (PyType_Ready(&MessageType) < 0) return -1;
  Py_INCREF(&MessageType);
  if (PyModule_AddObject(module, "Message", reinterpret_cast<PyObject*>(&MessageType)) < 0) {
    Py_DECREF(&MessageType);
    return -1;
  }
  return 0;
}

PyObject* NewMessage(std::shared_ptr<RxState> state, std::span<const std::byte> data, bool pinned) {
  auto* m = PyObject_New(MessageObject, &MessageType);
  if (m == nullptr) return nullptr;
  m->state = new std::shared_ptr<RxState>(std::move(state));
  m->data = data.data();
  m->size = static_cast<Py_ssize_t>(data.size());
  m->exports = 0;
  m->view = nullptr;
  m->invalid = false;
  m->returned = false;
  m->pinned = pinned;
  m->map_base = nullptr;
  m->mapped = 0;
  m->release_word = nullptr;
  return reinterpret_cast<PyObject*>(m);
}

PyObject* NewMappedMessage(void* base, size_t map_len, const std::byte* data, size_t size,
                           std::atomic<uint32_t>* release_word) {
  auto* m = PyObject_New(MessageObject, &MessageType);
  if (m == nullptr) {
    ::munmap(base, map_len);
    return nullptr;
  }
  m->state = nullptr;
  m->data = data;
  m->size = static_cast<Py_ssize_t>(size);
  m->exports = 0;
  m->view = nullptr;
  m->invalid = false;
  m->returned = false;
  m->pinned = false;
  m->map_base = base;
  m->mapped = map_len;
  m->release_word = release_word;
  return reinterpret_cast<PyObject*>(m);
}

}  // namespace shmlink::py
