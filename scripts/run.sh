#!/usr/bin/env bash
# Copyright shmlink authors. SPDX-License-Identifier: MIT
# The README's main command: installs what is missing, builds, runs the ping-pong demo
# (two separate programs meeting by shm name) and then the headline benchmark
# (//bench:compare: shmlink against sockets, pipes, iceoryx, Boost.Interprocess, Python
# multiprocessing and the hardware floors, in one run). Extra arguments go to the benchmark,
# e.g. `bash scripts/run.sh --quick` (under 2 minutes) or `--json=bench/out/compare.jsonl`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bazel build -c opt //examples/... //bench:compare //python:all

echo "== demo: ping_pong (two separate processes meeting by one shm name)"
name="/shmlink-demo-$$"
bazel-bin/examples/ping_pong/pong --name "$name" --count 100000 &
pong=$!
bazel-bin/examples/ping_pong/ping --name "$name" --count 100000
wait "$pong"

echo "== benchmark: bazel run -c opt //bench:compare $*"
bazel run -c opt //bench:compare -- "$@"
