#!/usr/bin/env bash
# Copyright shmlink authors. SPDX-License-Identifier: MIT
#
# Runs the pub/sub example across three network namespaces (one publishing host, two
# importing hosts, each with its own /dev/shm) from the test's runfiles, and fails unless
# both subscribers got an unbroken run of quotes ending with the last one and both
# importing bridges closed their topics at the end of the stream.
set -euo pipefail
root="$TEST_SRCDIR/$TEST_WORKSPACE"
out="${TEST_TMPDIR:-/tmp}/across_namespaces.out"
# 4 s of publishing: the Python host is connected well before the end even when loaded.
SHMLINK_BIN="$root" bash "$root/examples/pubsub/across_namespaces.sh" --count 20000 --rate 5000 \
  2>&1 | tee "$out"
grep -q "^host a (C++): .*: ok$" "$out"
grep -q "^host b (Python): .*: ok$" "$out"
