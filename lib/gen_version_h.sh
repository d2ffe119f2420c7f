#!/usr/bin/env bash
# Copyright shmlink authors. SPDX-License-Identifier: MIT
#
# gen_version_h.sh VERSION_FILE TEMPLATE OUT: writes <shmlink/version.h> from the VERSION file
# (one line, MAJOR.MINOR.PATCH). Used by Bazel (//lib:version_h) and CMake alike.
set -euo pipefail
v=$(tr -d ' \n' <"$1")
if ! [[ "$v" =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)$ ]]; then
  echo "gen_version_h: $1 must hold MAJOR.MINOR.PATCH, got '$v'" >&2
  exit 1
fi
sed -e "s/@MAJOR@/${BASH_REMATCH[1]}/g" -e "s/@MINOR@/${BASH_REMATCH[2]}/g" \
  -e "s/@PATCH@/${BASH_REMATCH[3]}/g" "$2" >"$3"
