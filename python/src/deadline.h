// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Blocking calls of the extension wait in slices: each slice releases the GIL, sleeps at
// most kSlice, then runs Python's signal handlers, so Ctrl-C interrupts within ~50 ms.
// Deadline turns a Python timeout (seconds; None = forever) into those slices.
#ifndef SHMLINK_PYTHON_SRC_DEADLINE_H_
#define SHMLINK_PYTHON_SRC_DEADLINE_H_

#include <Python.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <chrono>
#include <optional>

#include "python/src/channel.h"

namespace shmlink::py {

inline constexpr std::chrono::milliseconds kSlice{50};

// Propagates the Python exception already set (PyErr_*) through pybind11.
[[noreturn]] inline void ThrowPythonError() { throw pybind11::error_already_set(); }

// Runs pending signal handlers; raises what they raised (KeyboardInterrupt, ...).
inline void CheckSignals() {
  if (PyErr_CheckSignals() != 0) ThrowPythonError();
}

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Deadline(Timeout t)
      : infinite_(!t.has_value()),
        at_(infinite_ ? Clock::time_point::max()
                      : Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(std::max(0.0, *t)))) {}

  // Time left; nanoseconds::max() when waiting forever.
  std::chrono::nanoseconds Left() const {
    if (infinite_) return std::chrono::nanoseconds::max();
    return std::chrono::duration_cast<std::chrono::nanoseconds>(at_ - Clock::now());
  }

  // Next wait slice, or nullopt if the deadline has passed.
  std::optional<std::chrono::nanoseconds> Slice() const {
    if (infinite_) return kSlice;
    auto left = at_ - Clock::now();
    if (left <= Clock::duration::zero()) return std::nullopt;
    return std::min<std::chrono::nanoseconds>(kSlice, left);
  }

 private:
  bool infinite_;
  Clock::time_point at_;
};

}  // namespace shmlink::py

#endif  // SHMLINK_PYTHON_SRC_DEADLINE_H_
