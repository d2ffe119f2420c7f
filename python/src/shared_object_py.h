// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Registers _SharedObject (robust-locked shared bytes behind shmlink.Value/Array) in the
// extension module. See shared_object_py.cc.
#ifndef SHMLINK_PYTHON_SRC_SHARED_OBJECT_PY_H_
#define SHMLINK_PYTHON_SRC_SHARED_OBJECT_PY_H_

#include <pybind11/pybind11.h>

namespace shmlink::py {

void RegisterSharedObjectType(pybind11::module_& m);

}  // namespace shmlink::py

#endif  // SHMLINK_PYTHON_SRC_SHARED_OBJECT_PY_H_
