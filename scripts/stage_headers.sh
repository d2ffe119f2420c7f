#!/usr/bin/env bash
# Copyright shmlink authors. SPDX-License-Identifier: MIT
#
# stage_headers.sh DIR: lays out the headers as a user includes them, DIR/shmlink/<name>.h,
# for builds outside Bazel (fuzz targets, the Python package). Bazel gives the same paths
# through include_prefix = "shmlink" on each library.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$1/shmlink"
mkdir -p "$dir"
for h in "$root"/ringbuf/*.h "$root"/transport/*.h "$root"/python/include/*.h; do
  ln -sfn "$h" "$dir/$(basename "$h")"
done
