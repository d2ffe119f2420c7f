// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "python/src/decode_view.h"

namespace shmlink::py {

PyObject* DecodeView(PyObject* decode, std::span<const std::byte> bytes) {
  PyObject* mv =
      PyMemoryView_FromMemory(reinterpret_cast<char*>(const_cast<std::byte*>(bytes.data())),
                              static_cast<Py_ssize_t>(bytes.size()), PyBUF_READ);
  if (mv == nullptr) return nullptr;
  PyObject* result = PyObject_CallOneArg(decode, mv);
  // release() must not run with decode's exception pending (CPython would turn its result
  // into a SystemError): set the exception aside and restore it afterwards.
  PyObject *type = nullptr, *value = nullptr, *traceback = nullptr;
  if (result == nullptr) PyErr_Fetch(&type, &value, &traceback);
  PyObject* rel = PyObject_CallMethod(mv, "release", nullptr);
  Py_DECREF(mv);
  if (rel == nullptr) {
    Py_XDECREF(result);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
    return nullptr;
  }
  Py_DECREF(rel);
  if (result == nullptr) PyErr_Restore(type, value, traceback);
  return result;
}

}  // namespace shmlink::py
