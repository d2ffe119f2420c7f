// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// decode(memoryview over a message in place): the receive paths that let a Python callable
// read a message straight out of shared memory (_Channel.recv_decode, _SocketConn's
// recv_decode, _Queue.get) and then free its ring space or slot.
#ifndef SHMLINK_PYTHON_SRC_DECODE_VIEW_H_
#define SHMLINK_PYTHON_SRC_DECODE_VIEW_H_

#include <Python.h>

#include <cstddef>
#include <span>

namespace shmlink::py {

// Calls decode(memoryview over `bytes`) and returns its result as a new reference, or
// nullptr with a Python error set. The view is released before this returns, so the caller
// frees the bytes right afterwards, whatever the outcome. If decode kept an export of the
// view, releasing it fails (BufferError) and that is the error returned: the result, which
// may hold the view, is dropped. If decode raised, its exception is the one returned.
PyObject* DecodeView(PyObject* decode, std::span<const std::byte> bytes);

}  // namespace shmlink::py

#endif  // SHMLINK_PYTHON_SRC_DECODE_VIEW_H_
