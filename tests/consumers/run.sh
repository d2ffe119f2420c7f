#!/usr/bin/env bash
# Copyright shmlink authors. SPDX-License-Identifier: MIT
#
# The consumer tests: shmlink used from outside this repository, as the README tells users.
# Installs the tree into a fresh temporary prefix with scripts/install.sh, then builds and
# runs, each in a temporary copy of its project:
#   cmake    find_package(shmlink 0.2 CONFIG) + shmlink::shmlink / shmlink::shmlink_static
#   make     a plain Makefile with pkg-config (shared, and --static)
#   bazel    a separate workspace depending on @shmlink//:shmlink via local_repository
#   venv     python3 -m venv --system-site-packages + pip install ./python, then
#            pip wheel ./python into a second fresh venv; each checks __version__ and reads
#            a C++ producer's ring built against the install tree
#   python   the Python package of the install tree, reading the same C++ producer
#   bad-input  install.sh into an unwritable prefix / with a missing dependency fails in
#            one line and leaves nothing behind
# Each program passes 10 000 checksummed messages between two processes (and 1 000 on a
# topic). Prints one line per case and ends with "consumers: N passed, N failed".
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/shmlink-consumers.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"
passed=0
failed=0
log="$work/log"
export SHMLINK_EXPECTED_VERSION
SHMLINK_EXPECTED_VERSION=$(tr -d ' \n' <"$root/VERSION")

result() {  # result NAME STATUS
  if [ "$2" -eq 0 ]; then
    echo "consumer: $1: ok"; passed=$((passed + 1))
  else
    echo "consumer: $1: FAILED"; tail -n 30 "$log" | sed 's/^/    /'; failed=$((failed + 1))
  fi
}
project() {  # project NAME: a fresh copy of tests/consumers/NAME with the shared program
  rm -rf "$work/$1"; cp -a "$here/$1" "$work/$1"; cp "$here/ring_pass.cc" "$work/$1/"
  echo "$work/$1"
}
# links_shmlink BIN: 0 if BIN loads libshmlink.so from the install tree
links_shmlink() { ldd "$1" | grep -q "$prefix/lib/libshmlink.so"; }
# produce_for_python PYTHON: a C++ producer from the install tree, read by PYTHON
produce_for_python() {
  local py="$1" name="/shmlink-consumer-py-$$-$RANDOM"
  "$work/make/ring_pass" --produce "$name" &
  local producer=$!
  SHMLINK_PRODUCER_PID=$producer "$py" "$here/consume_ring.py" "$name" || { kill "$producer" 2>/dev/null; wait "$producer"; return 1; }
  wait "$producer"
}

echo "consumer: installing into a temporary prefix" >&2
bash "$root/scripts/install.sh" --prefix "$prefix" >"$log" 2>&1
result install $?
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"

d=$(project cmake)
{ cmake -S "$d" -B "$d/build" -DCMAKE_PREFIX_PATH="$prefix" && cmake --build "$d/build" -j 2 \
  && links_shmlink "$d/build/ring_pass" && ! links_shmlink "$d/build/ring_pass_static" \
  && "$d/build/ring_pass" | grep -qx "shmlink $SHMLINK_EXPECTED_VERSION" \
  && "$d/build/ring_pass" && "$d/build/ring_pass_static"; } >"$log" 2>&1
result cmake $?

d=$(project make)
{ make -C "$d" && links_shmlink "$d/ring_pass" && ! links_shmlink "$d/ring_pass_static" \
  && "$d/ring_pass" && "$d/ring_pass_static"; } >"$log" 2>&1
result make $?

if command -v bazel >/dev/null 2>&1; then
  d=$(project bazel)
  sed -i "s|@SHMLINK_ROOT@|$root|g" "$d/WORKSPACE"
  # A workspace of its own: its own output base, shut down afterwards.
  { (cd "$d" && bazel --output_user_root="$work/bazel-root" build //:ring_pass \
      && "$d/bazel-bin/ring_pass"; rc=$?; bazel --output_user_root="$work/bazel-root" shutdown; exit $rc); } >"$log" 2>&1
  result bazel $?
else
  echo "consumer: bazel: skipped (no bazel)"
fi

# Python from the install tree.
{ PYTHONPATH="$(echo "$prefix"/lib/python3*/dist-packages)" produce_for_python /usr/bin/python3; } >"$log" 2>&1
result python-install-tree $?

# pip into a venv, then a wheel into a second venv (offline, no build isolation).
src="$work/src"; mkdir -p "$src"
cp -a "$root/VERSION" "$root/ringbuf" "$root/transport" "$root/python" "$src/"
rm -rf "$src/python/build" "$src/python/"*.egg-info
{ /usr/bin/python3 -m venv --system-site-packages "$work/v1" \
  && "$work/v1/bin/pip" install --quiet --no-index --no-build-isolation "$src/python" \
  && (cd "$work" && produce_for_python "$work/v1/bin/python"); } >"$log" 2>&1
result venv-pip-install $?
{ "$work/v1/bin/pip" wheel --quiet --no-index --no-build-isolation --no-deps -w "$work/wheels" "$src/python" \
  && /usr/bin/python3 -m venv --system-site-packages "$work/v2" \
  && "$work/v2/bin/pip" install --quiet --no-index "$work"/wheels/shmlink-*.whl \
  && (cd "$work" && produce_for_python "$work/v2/bin/python"); } >"$log" 2>&1
result venv-wheel $?

# Bad input: one clear line, nothing left behind.
bad_install() {  # bad_install EXPECTED_WORDS PREFIX [ENV...]
  local words="$1" p="$2"; shift 2
  local out rc
  out=$(env "$@" bash "$root/scripts/install.sh" --prefix "$p" 2>&1); rc=$?
  echo "$out"
  [ "$rc" -ne 0 ] && echo "$out" | tail -n 1 | grep -q "$words" && [ ! -e "$p/include" ]
}
touch "$work/a-file"
{ bad_install "cannot write to" "$work/a-file/prefix" \
  && bad_install "missing /nonexistent/python3" "$work/p2" SHMLINK_PYTHON=/nonexistent/python3 \
  && [ ! -e "$work/p2" ]; } >"$log" 2>&1
result bad-input $?

bash "$root/scripts/uninstall.sh" --prefix "$prefix" >"$log" 2>&1 && [ -z "$(find "$prefix" -type f)" ]
result uninstall $?

echo "consumers: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
