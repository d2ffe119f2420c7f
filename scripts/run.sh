#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, runs the ping-pong demo
# (two separate programs meeting by shm name) and then the headline benchmark.
# Extra arguments go to the benchmark (e.g. --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bazel build -c opt //examples/... //bench/...
echo "== demo: ping_pong (two processes, one shm name)"
name="/shmlink-demo-$$"
bazel-bin/examples/ping_pong/pong --name "$name" --count 100000 &
pong=$!
bazel-bin/examples/ping_pong/ping --name "$name" --count 100000
wait "$pong"
echo "== benchmark"
bazel run -c opt //bench:ring_throughput -- "$@"
