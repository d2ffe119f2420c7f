// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Registers _Listener, _SocketConn and _connect (transport/connection.h) in the extension
// module. See transport_py.cc.
#ifndef SHMLINK_PYTHON_SRC_TRANSPORT_PY_H_
#define SHMLINK_PYTHON_SRC_TRANSPORT_PY_H_

#include <pybind11/pybind11.h>

namespace shmlink::py {

void RegisterTransportTypes(pybind11::module_& m);

}  // namespace shmlink::py

#endif  // SHMLINK_PYTHON_SRC_TRANSPORT_PY_H_
