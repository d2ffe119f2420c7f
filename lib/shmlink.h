// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// <shmlink/shmlink.h>: the whole public API in one include. Programs may include just the
// parts they use instead (<shmlink/spsc_ring.h>, <shmlink/connection.h>, ...).
//
// Link: CMake `target_link_libraries(app PRIVATE shmlink::shmlink)`, pkg-config
// `pkg-config --cflags --libs shmlink`, Bazel `@shmlink//:shmlink`. Needs C++20.
#ifndef SHMLINK_LIB_SHMLINK_H_
#define SHMLINK_LIB_SHMLINK_H_

#include <shmlink/address.h>
#include <shmlink/connection.h>
#include <shmlink/expected.h>
#include <shmlink/mpmc_queue.h>
#include <shmlink/pickle.h>
#include <shmlink/ring_error.h>
#include <shmlink/segment.h>
#include <shmlink/shared_memory.h>
#include <shmlink/shared_object.h>
#include <shmlink/spsc_ring.h>
#include <shmlink/topic.h>
#include <shmlink/transport_error.h>
#include <shmlink/version.h>
#include <shmlink/wait_options.h>

#endif  // SHMLINK_LIB_SHMLINK_H_
