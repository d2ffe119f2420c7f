// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "python/src/decode_view.h"

namespace shmlink::py {

PyObject* DecodeView(PyObject* decode, std::span<const std::byte> bytes) {
  PyObject* mv =
      PyMemoryView_FromMemory(reinterpret_cast<char*>(const_cast<std::byte*>(bytes.data())),
                              static_cast<Py_ssize_t>(bytes.size()), PyBUF_READ);
  if (mv == nullptr) return nullptr;
  PyObject* result = PyObject_CallOneArg(decode, mv);
  PyObject* rel = PyObject_CallMethod(mv, "release", nullptr);
  Py_DECREF(mv);
  if (rel == nullptr) {
    Py_XDECREF(result);
    return nullptr;
  }
  Py_DECREF(rel);
  return result;
}

}  // namespace shmlink::py
