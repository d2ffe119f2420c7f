// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// numpy_producer: streams NumPy-array frames (or plain byte messages) into a named shmlink
// ring that a Python process created; Python receives the arrays with Ring.recv_array()
// without copying them. Used by examples/python/numpy_stream.py and tests/python.
//
//   numpy_producer NAME COUNT ROWS COLS [bytes]
//
// Array mode: message i is a ROWS x COLS float64 array whose element k equals i * 1000 + k,
// written in place in the ring (reserve, fill, commit: no intermediate buffer).
// Bytes mode: message i is ROWS * COLS bytes, each equal to (i + k) % 251.
// Then closes the stream (the Python side gets EOFError after the last message).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <shmlink/array_frame.h>
#include <shmlink/spsc_ring.h>

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s NAME COUNT ROWS COLS [bytes]\n", argv[0]);
    return 2;
  }
  const std::string name = argv[1];
  const uint64_t count = std::strtoull(argv[2], nullptr, 10);
  const uint64_t rows = std::strtoull(argv[3], nullptr, 10);
  const uint64_t cols = std::strtoull(argv[4], nullptr, 10);
  const bool bytes_mode = argc > 5 && std::string(argv[5]) == "bytes";

  auto ring = shmlink::SpscRing::Attach(name);
  if (!ring) {
    std::fprintf(stderr, "attach %s: %s\n", name.c_str(), ring.error().message().c_str());
    return 1;
  }
  auto tx = ring->Producer();
  if (!tx) {
    std::fprintf(stderr, "producer role: %s\n", tx.error().message().c_str());
    return 1;
  }
  for (uint64_t i = 0; i < count; ++i) {
    const size_t n =
        bytes_mode ? rows * cols : shmlink::python::ArrayFrameSize("<f8", {rows, cols}, 8);
    auto buf = tx->reserve(n);
    if (!buf) {
      std::fprintf(stderr, "reserve: %s\n", buf.error().message().c_str());
      return 1;
    }
    if (bytes_mode) {
      for (size_t k = 0; k < n; ++k) (*buf)[k] = static_cast<std::byte>((i + k) % 251);
    } else {
      double* data = shmlink::python::WriteArrayFrame<double>(*buf, "<f8", {rows, cols});
      for (uint64_t k = 0; k < rows * cols; ++k) data[k] = static_cast<double>(i * 1000 + k);
    }
    tx->commit();
  }
  tx->close();
  return 0;
}
