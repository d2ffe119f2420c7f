#!/usr/bin/env bash
# Copyright shmlink authors. SPDX-License-Identifier: MIT
#
# uninstall.sh [--prefix DIR]   (default /usr/local)
# Removes exactly the files scripts/install.sh recorded in DIR/share/shmlink/install_manifest.txt,
# then the directories that this left empty. Files it did not install are never touched.
set -uo pipefail
prefix=/usr/local
die() { echo "uninstall: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    *) die "unknown argument $1 (usage: uninstall.sh [--prefix DIR])" ;;
  esac
done
manifest="$prefix/share/shmlink/install_manifest.txt"
[ -f "$manifest" ] || die "no shmlink installation in $prefix (no $manifest)"
mapfile -t files <"$manifest"
for f in "${files[@]}"; do
  case "$f" in /*|*..*) die "refusing manifest entry $f" ;; esac
  rm -f "$prefix/$f"
done
# Remove the directories emptied above, deepest first; never the prefix itself.
for f in "${files[@]}"; do dirname "$f"; done | sort -u | awk -F/ '{print NF, $0}' | sort -rn |
  cut -d' ' -f2- | while read -r d; do
    while [ "$d" != "." ] && rmdir "$prefix/$d" 2>/dev/null; do d=$(dirname "$d"); done
  done
echo "uninstall: removed ${#files[@]} files of shmlink from $prefix" >&2
