#!/usr/bin/env bash
# Copyright shmlink authors. SPDX-License-Identifier: MIT
# The README's test command: installs what is missing, builds, runs every test (plain,
# then the concurrency tests under ThreadSanitizer and the C++ suite under
# AddressSanitizer+UBSan, then bounded fuzzing, then the consumer projects against a fresh
# install tree), checks that nothing was left in /dev/shm,
# and ends with one line "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

BAZEL=(bazel)
STATUS=0
PASSED=0
FAILED=0
SKIPPED=0
shm_before=$(ls /dev/shm | grep -c '^shmlink' || true)
# Tests put their Unix sockets in /tmp as shmlink*.sock (TEST_TMPDIR can exceed sun_path).
count_sockets() { find /tmp -maxdepth 1 -name 'shmlink*.sock' 2>/dev/null | wc -l; }
sock_before=$(count_sockets)

# run_suite CONFIG_NAME QUERY [bazel flags...]
run_suite() {
  local cfg="$1" query="$2"
  shift 2
  local labels
  labels=$("${BAZEL[@]}" query "$query" 2>/dev/null | sort)
  if [ -z "$labels" ]; then
    echo "== $cfg: no tests match" >&2
    return
  fi
  echo "== $cfg: $(echo "$labels" | wc -l) test targets" >&2
  # shellcheck disable=SC2086
  "${BAZEL[@]}" test "$@" $labels || STATUS=1
  local outdir
  outdir=$("${BAZEL[@]}" info "$@" bazel-testlogs 2>/dev/null)
  read -r p f s < <(python3 scripts/count_tests.py "$outdir" $labels)
  echo "== $cfg: $p passed, $f failed, $s skipped" >&2
  PASSED=$((PASSED + p)); FAILED=$((FAILED + f)); SKIPPED=$((SKIPPED + s))
}

run_suite plain 'tests(//...)'
run_suite tsan 'attr(tags, "concurrency", tests(//...)) except attr(tags, "no_sanitizer", tests(//...))' --config=tsan
run_suite asan 'tests(//...) except attr(tags, "no_sanitizer", tests(//...))' --config=asan

if [ -x scripts/fuzz.sh ]; then
  if bash scripts/fuzz.sh; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); STATUS=1; fi
fi

# shmlink used from outside the repository: install tree, CMake, pkg-config, Bazel, pip.
consumers_out=$(bash tests/consumers/run.sh 2>&1) || STATUS=1
echo "$consumers_out" | grep '^consumer' >&2
read -r cp cf < <(echo "$consumers_out" | sed -n 's/^consumers: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p')
if [ -z "${cp:-}" ]; then
  echo "$consumers_out" | tail -n 20 >&2
  cp=0; cf=1; STATUS=1
fi
PASSED=$((PASSED + cp)); FAILED=$((FAILED + cf))

leftover=$(ls /dev/shm | grep -c '^shmlink' || true)
if [ "$leftover" -gt "$shm_before" ]; then
  echo "test: tests left segments in /dev/shm:" >&2
  ls -la /dev/shm | grep shmlink >&2
  FAILED=$((FAILED + 1)); STATUS=1
fi

sock_after=$(count_sockets)
if [ "$sock_after" -gt "$sock_before" ]; then
  echo "test: tests left socket files in /tmp:" >&2
  find /tmp -maxdepth 1 -name 'shmlink*.sock' >&2
  FAILED=$((FAILED + 1)); STATUS=1
fi

if [ "${CI:-}" = "true" ]; then "${BAZEL[@]}" shutdown >/dev/null 2>&1 || true; fi
if [ "$FAILED" -gt 0 ]; then STATUS=1; fi
echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
exit $STATUS
