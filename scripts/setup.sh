#!/usr/bin/env bash
# Copyright shmlink authors. SPDX-License-Identifier: MIT
# Installs every Debian package shmlink needs (idempotent; quiet when all are present).
# Sourced or run by scripts/run.sh and scripts/test.sh; needs root (apt-get).
set -euo pipefail

PACKAGES=(
  # build
  bazel-bootstrap g++ clang-format clang-tidy
  # install tree and the consumer projects that use it (scripts/install.sh, tests/consumers)
  cmake make pkg-config python3-venv python3-pybind11 python3-wheel
  # tests and benchmarks
  libgtest-dev googletest libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libssl-dev
  # cross-host bridge (bridge/): ZeroMQ carries the bytes between hosts
  libzmq3-dev cppzmq-dev python3-zmq iproute2
  # peers compared in the benchmarks
  iceoryx libiceoryx-posh-dev libboost-dev
  # python module and its tests
  python3 python3-dev pybind11-dev python3-pytest python3-numpy python3-setuptools python3-pip
  # fuzzing and sanitizers
  clang-14 libclang-rt-14-dev
  # plots
  gnuplot-nox
  # utilities used by scripts
  procps
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to apt-get install the packages above" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
