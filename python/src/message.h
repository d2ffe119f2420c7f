// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// shmlink.Message: one received message left in place in shared memory (zero-copy).
//
// It exports a read-only buffer (memoryview(msg), bytes(msg), numpy.frombuffer(msg)). The
// ring space is given back when the message is released: explicitly (release(), or the end
// of a `with` block) once no buffer export remains, or when the object is destroyed. After
// release() every new buffer request raises BufferError, and the memoryview handed out by
// __enter__ is released, so using it raises ValueError: a stale view never reads freed
// ring memory. Buffers exported before release() keep the bytes reserved until they go.
//
// A "pinned" message (the base object of an array from Ring.recv_array) refuses an explicit
// release(): it lives exactly as long as the arrays that view it.
#ifndef SHMLINK_PYTHON_SRC_MESSAGE_H_
#define SHMLINK_PYTHON_SRC_MESSAGE_H_

#include <Python.h>

#include <atomic>
#include <memory>
#include <span>

#include "python/src/channel.h"

namespace shmlink::py {

// Adds the type to `module` as "Message". Returns 0, or -1 with a Python error set.
int RegisterMessageType(PyObject* module);

// New reference to a Message over `data`, which must stay valid until the message is
// returned to `state` (state->outstanding was already incremented for it).
PyObject* NewMessage(std::shared_ptr<RxState> state, std::span<const std::byte> data, bool pinned);

// New reference to a Message over [data, data + size) inside a mapping [base, base +
// map_len) that the message owns (large Pipe messages, which arrive in a memfd): when the
// message is given back, `release_word` (if not null, inside the mapping) is set to 0 so
// the sender may reuse the segment, then the mapping is unmapped. On failure the mapping
// is unmapped (the word is left: the sender then never reuses that segment).
PyObject* NewMappedMessage(void* base, size_t map_len, const std::byte* data, size_t size,
                           std::atomic<uint32_t>* release_word);

}  // namespace shmlink::py

#endif  // SHMLINK_PYTHON_SRC_MESSAGE_H_
