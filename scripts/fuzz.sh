#!/usr/bin/env bash
# Copyright shmlink authors. SPDX-License-Identifier: MIT
# Builds and runs every libFuzzer target fuzz/*_fuzz.cc for a bounded time.
#
#   scripts/fuzz.sh                      # CI: ~120 s in total, split across targets
#   scripts/fuzz.sh --seconds 600        # documented long run: 600 s per target
#   scripts/fuzz.sh --runs 10000000      # or a fixed number of executions per target
#   scripts/fuzz.sh --only spsc_ring     # just one target (name without _fuzz.cc)
#
# Each target's first lines name what it is compiled with (paths relative to the repo root):
#   // fuzz-srcs: ringbuf/segment.cc ringbuf/segment_header.cc
#   // fuzz-srcs: ringbuf/spsc_ring.cc    (repeat the key rather than exceed 100 columns:
#   // fuzz-libs: -lcrypto                 clang-format reflows long comments; optional)
# Build: clang++-14 -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -I. -I<staged> <target>
#        <srcs> -lrt <libs>, into $FUZZ_BUILD_DIR (default ${TMPDIR:-/tmp}/shmlink-fuzz-<cksum
# of the checkout path>, so concurrent runs from different worktrees never collide),
# never into the source tree. Seeds come from fuzz/corpus/<name>/ when present; new inputs
# go to the build dir. Crash inputs are kept in $FUZZ_BUILD_DIR/artifacts/<name>/.
#
# Time per target: --seconds N, else $FUZZ_SECONDS, else $FUZZ_TOTAL_SECONDS (default 120)
# divided by the number of targets, clamped to [10, 20] s, so CI stays bounded as targets
# are added. Prints one line per target (executions, crashes) and a JSON line per target
# ({"fuzz_target": ..., "executions": ..., "crashes": ..., "seconds": ...}); exits non-zero
# if any target failed to build or found a crash (or a timeout / out-of-memory input).
set -uo pipefail
cd "$(dirname "$0")/.."

CXX=${FUZZ_CXX:-clang++-14}
# One build dir per checkout: concurrent runs from different worktrees must not overwrite
# each other's binaries, logs and artifacts.
BUILD_DIR=${FUZZ_BUILD_DIR:-${TMPDIR:-/tmp}/shmlink-fuzz-$(pwd | cksum | cut -d' ' -f1)}
SECONDS_PER=""
RUNS=""
ONLY=""

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_PER="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "fuzz: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

if ! command -v "$CXX" >/dev/null 2>&1; then
  echo "fuzz: $CXX not found (apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 1
fi

shopt -s nullglob
targets=()
for f in fuzz/*_fuzz.cc; do
  name=$(basename "$f" _fuzz.cc)
  if [ -n "$ONLY" ] && [ "$name" != "$ONLY" ]; then continue; fi
  targets+=("$f")
done
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no targets found (fuzz/*_fuzz.cc${ONLY:+, --only $ONLY})" >&2
  [ -n "$ONLY" ] && exit 1
  exit 0
fi

if [ -z "$SECONDS_PER" ] && [ -z "$RUNS" ]; then
  if [ -n "${FUZZ_SECONDS:-}" ]; then
    SECONDS_PER=$FUZZ_SECONDS
  else
    total=${FUZZ_TOTAL_SECONDS:-120}
    SECONDS_PER=$((total / ${#targets[@]}))
    [ "$SECONDS_PER" -lt 10 ] && SECONDS_PER=10
    [ "$SECONDS_PER" -gt 20 ] && SECONDS_PER=20
  fi
fi

mkdir -p "$BUILD_DIR/bin" "$BUILD_DIR/corpus" "$BUILD_DIR/artifacts" "$BUILD_DIR/logs"
# Sources include <shmlink/...> as users do: lay the headers out that way.
bash scripts/stage_headers.sh "$BUILD_DIR/include"

# header_value FILE KEY: the words after every "// KEY:" in the first 15 lines of FILE
# (repeat the key for lists longer than a line), plus continuation lines that hold only
# paths ending in .cc/.c/.cpp (what clang-format makes of an over-long first line).
header_value() {
  head -n 15 "$1" | awk -v key="$2" '
    $0 ~ "^//[[:space:]]*" key ":" { sub("^//[[:space:]]*" key ":[[:space:]]*", ""); printf "%s ", $0; cont = 1; next }
    cont && /^\/\/[[:space:]]*([^[:space:]]+\.(cc|c|cpp)[[:space:]]*)+$/ { sub("^//[[:space:]]*", ""); printf "%s ", $0; next }
    { cont = 0 }'
}

# needs_build BIN SOURCES...: true if BIN is missing or older than a source or any header.
needs_build() {
  local bin="$1"
  shift
  [ -x "$bin" ] || return 0
  local s
  for s in "$@"; do
    [ "$s" -nt "$bin" ] && return 0
  done
  [ -n "$(find ringbuf transport python fuzz -name '*.h' -newer "$bin" 2>/dev/null | head -n 1)" ]
}

status=0
total_execs=0
summary=()
for target in "${targets[@]}"; do
  name=$(basename "$target" _fuzz.cc)
  bin="$BUILD_DIR/bin/${name}_fuzz"
  log="$BUILD_DIR/logs/$name.log"
  # shellcheck disable=SC2206
  srcs=($(header_value "$target" fuzz-srcs))
  # shellcheck disable=SC2206
  libs=($(header_value "$target" fuzz-libs))
  missing=0
  for s in "${srcs[@]}"; do
    if [ ! -f "$s" ]; then
      echo "fuzz: $name: fuzz-srcs names $s, which does not exist" >&2
      missing=1
    fi
  done
  if [ "$missing" -ne 0 ]; then
    summary+=("$name: BUILD FAILED (missing sources)")
    status=1
    continue
  fi
  if needs_build "$bin" "$target" "${srcs[@]}"; then
    echo "fuzz: building $name" >&2
    if ! "$CXX" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -I. -I"$BUILD_DIR/include" \
        "$target" "${srcs[@]}" -lrt "${libs[@]}" -o "$bin.tmp" 2>"$BUILD_DIR/logs/$name.build.log"; then
      echo "fuzz: $name: build failed:" >&2
      head -n 40 "$BUILD_DIR/logs/$name.build.log" >&2
      summary+=("$name: BUILD FAILED")
      status=1
      continue
    fi
    mv -f "$bin.tmp" "$bin"
  fi

  work="$BUILD_DIR/corpus/$name"
  mkdir -p "$work"
  corpora=("$work")
  [ -d "fuzz/corpus/$name" ] && corpora+=("fuzz/corpus/$name")
  limit=(-max_total_time="${SECONDS_PER:-0}")
  [ -n "$RUNS" ] && limit=(-runs="$RUNS")
  art="$BUILD_DIR/artifacts/$name"
  mkdir -p "$art"
  marker="$BUILD_DIR/logs/$name.started"
  : >"$marker"
  start=$(date +%s)
  # -timeout: a single input taking 25 s is a hang; -rss_limit_mb guards leaks in loops.
  # UBSan findings abort (halt_on_error) so libFuzzer records them as crashes.
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
    "$bin" "${limit[@]}" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$art/" "${corpora[@]}" >"$log" 2>&1
  rc=$?
  elapsed=$(($(date +%s) - start))
  crashes=$(find "$art" -type f -newer "$marker" | wc -l)
  execs=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$log" | tail -n 1)
  execs=${execs:-0}
  total_execs=$((total_execs + execs))
  if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    status=1
    echo "fuzz: $name: FAILED (exit $rc); last lines of $log:" >&2
    grep -m 5 -E 'ERROR: |runtime error|SUMMARY' "$log" >&2
    tail -n 15 "$log" >&2
    echo "fuzz: crash inputs in $art/" >&2
    summary+=("$name: $execs executions in ${elapsed} s, $crashes crashes  FAILED")
  else
    summary+=("$name: $execs executions in ${elapsed} s, 0 crashes")
  fi
  printf '{"fuzz_target": "%s", "executions": %s, "crashes": %s, "seconds": %s}\n' \
    "$name" "$execs" "$crashes" "$elapsed"
done

for line in "${summary[@]}"; do echo "fuzz: $line" >&2; done
echo "fuzz: ${#targets[@]} targets, $total_execs executions in total, $([ $status -eq 0 ] && echo OK || echo FAILED)" >&2
exit $status
