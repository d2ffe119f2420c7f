// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Registers _Queue (MpmcQueue + shared counters) in the extension module. See queue.cc.
#ifndef SHMLINK_PYTHON_SRC_QUEUE_H_
#define SHMLINK_PYTHON_SRC_QUEUE_H_

#include <pybind11/pybind11.h>

namespace shmlink::py {

void RegisterQueueTypes(pybind11::module_& m);

}  // namespace shmlink::py

#endif  // SHMLINK_PYTHON_SRC_QUEUE_H_
