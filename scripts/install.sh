#!/usr/bin/env bash
# Copyright shmlink authors. SPDX-License-Identifier: MIT
#
# install.sh [--prefix DIR]   (default /usr/local; idempotent; no network)
#
# Builds shmlink optimised and installs, under DIR:
#   include/shmlink/*.h            the public headers (<shmlink/shmlink.h> includes them all)
#   lib/libshmlink.so.MAJOR.MINOR  shared library (versioned SONAME), lib/libshmlink.a
#   lib/cmake/shmlink/             CMake package: find_package(shmlink 0.2 CONFIG REQUIRED)
#   lib/pkgconfig/shmlink.pc       pkg-config --cflags --libs [--static] shmlink
#   lib/pythonX.Y/dist-packages/shmlink  the Python package for /usr/bin/python3 (on its
#                                  path for /usr/local; elsewhere add it to PYTHONPATH)
#   bin/                           command-line tools, where the tree has them
#   share/shmlink/install_manifest.txt   every file installed (scripts/uninstall.sh reads it)
# Everything is built and laid out in a staging directory first: a failure (a missing
# dependency, an unwritable DIR, a failed build) leaves DIR as it was, and says why in one
# line.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
prefix=/usr/local
python=${SHMLINK_PYTHON:-/usr/bin/python3}

die() { echo "install: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    -h|--help) sed -n '3,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (usage: install.sh [--prefix DIR])" ;;
  esac
done
case "$prefix" in /*) ;; *) prefix="$(pwd)/$prefix" ;; esac

# Dependencies first, each named with the Debian package that brings it.
need_cmd() { command -v "$1" >/dev/null 2>&1 || die "missing $1 (apt-get install $2)"; }
need_cmd cmake cmake
need_cmd c++ g++
need_cmd make make
[ -f /usr/include/openssl/hmac.h ] || die "missing OpenSSL headers (apt-get install libssl-dev)"
[ -x "$python" ] || die "missing $python (apt-get install python3)"
"$python" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || die "missing Python headers for $python (apt-get install python3-dev)"
"$python" -c 'import pybind11' 2>/dev/null || die "missing pybind11 for $python (apt-get install python3-pybind11 pybind11-dev)"
"$python" -m pip --version >/dev/null 2>&1 || die "missing pip for $python (apt-get install python3-pip)"

# The prefix must be writable (created if absent) before anything is built.
probe_dir="$prefix"
while [ ! -e "$probe_dir" ]; do probe_dir=$(dirname "$probe_dir"); done
[ -d "$probe_dir" ] && [ -w "$probe_dir" ] || die "cannot write to $prefix ($probe_dir is not a writable directory)"

stage=$(mktemp -d "${TMPDIR:-/tmp}/shmlink-install.XXXXXX") || die "cannot create a staging directory"
trap 'rm -rf "$stage"' EXIT
log="$stage/build.log"
tree="$stage/root"
jobs=$(nproc 2>/dev/null || echo 2)

echo "install: building the library (CMake, Release)" >&2
cmake -S "$root" -B "$stage/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DCMAKE_INSTALL_LIBDIR=lib >"$log" 2>&1 \
  && cmake --build "$stage/build" -j "$jobs" >>"$log" 2>&1 \
  && DESTDIR="$tree" cmake --install "$stage/build" >>"$log" 2>&1 \
  || { tail -n 20 "$log" >&2; die "building the library failed (log above)"; }

echo "install: building the Python package for $python" >&2
# A private copy of python/ keeps the build out of the source tree; setup.py finds the C++
# sources through its parent, so the copy sits in a copy of the tree's top level.
mkdir -p "$stage/src"
cp -a "$root/VERSION" "$root/LICENSE" "$root/ringbuf" "$root/transport" "$root/python" "$stage/src/"
rm -rf "$stage/src/python/build" "$stage/src/python/"*.egg-info
site="$prefix/lib/python$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')/dist-packages"
# The extension links the static library just built instead of compiling the sources again.
SHMLINK_STATIC_LIB="$stage/build/libshmlink.a" PIP_NO_INDEX=1 "$python" -m pip install --quiet \
  --no-deps --no-build-isolation --no-index --disable-pip-version-check \
  --no-warn-script-location --target "$tree$site" "$stage/src/python" >>"$log" 2>&1 \
  || { tail -n 20 "$log" >&2; die "building the Python package failed (log above)"; }

# Command-line tools, built with Bazel where the tree has them.
tools=()
for label in //cli:shmlink //bridge:shmlink-bridge; do
  pkg=${label%%:*}; pkg=${pkg#//}
  [ -f "$root/$pkg/BUILD" ] && tools+=("$label")
done
if [ ${#tools[@]} -gt 0 ]; then
  need_cmd bazel bazel-bootstrap
  echo "install: building ${tools[*]} (Bazel, opt)" >&2
  (cd "$root" && bazel build -c opt "${tools[@]}") >>"$log" 2>&1 \
    || { tail -n 20 "$log" >&2; die "building the command-line tools failed (log above)"; }
  mkdir -p "$tree$prefix/bin"
  for label in "${tools[@]}"; do
    bin="$root/bazel-bin/${label#//}"; bin=${bin/://}
    install -m 0755 "$bin" "$tree$prefix/bin/" || die "cannot stage $bin"
  done
fi

# The manifest lists every file and link, relative to the prefix.
mkdir -p "$tree$prefix/share/shmlink"
manifest="share/shmlink/install_manifest.txt"
(cd "$tree$prefix" && find . \( -type f -o -type l \) -printf '%P\n' | sort) >"$stage/manifest"
echo "$manifest" >>"$stage/manifest"
cp "$stage/manifest" "$tree$prefix/$manifest"

# Copy the staged tree into the prefix; on a failure, take back what was copied.
mkdir -p "$prefix" || die "cannot create $prefix"
if ! cp -a "$tree$prefix/." "$prefix/" 2>"$stage/copy.err"; then
  while read -r f; do rm -f "$prefix/$f"; done <"$stage/manifest"
  die "copying into $prefix failed: $(head -n 1 "$stage/copy.err")"
fi
echo "install: installed shmlink $(cat "$root/VERSION") into $prefix ($(wc -l <"$stage/manifest") files; manifest $prefix/$manifest)" >&2
