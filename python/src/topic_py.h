// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Registers _Topic, _TopicPublisher, _TopicSubscriber and _TopicSample: the extension side
// of shmlink.Topic (python/shmlink/_topic.py), over ringbuf/topic.h.
#ifndef SHMLINK_PYTHON_SRC_TOPIC_PY_H_
#define SHMLINK_PYTHON_SRC_TOPIC_PY_H_

#include <pybind11/pybind11.h>

namespace shmlink::py {

void RegisterTopicTypes(pybind11::module_& m);

}  // namespace shmlink::py

#endif  // SHMLINK_PYTHON_SRC_TOPIC_PY_H_
