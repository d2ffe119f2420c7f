// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Where a benchmark finds the files it did not link in: the source tree (reports go to
// bench/out/ there) and its own Bazel runfiles (the Python benchmarks it drives).
#ifndef SHMLINK_BENCH_SOURCE_TREE_H_
#define SHMLINK_BENCH_SOURCE_TREE_H_

#include <string>

namespace shmlink::bench {

// The workspace `bazel run` was started from, else the current directory if it is the
// workspace root (a binary run directly from there), else "".
std::string SourceRoot();

// This program's runfiles tree ("<binary>.runfiles/shmlink"): RUNFILES_DIR when Bazel set
// it, else found next to the executable.
std::string RunfilesRoot();

}  // namespace shmlink::bench

#endif  // SHMLINK_BENCH_SOURCE_TREE_H_
