// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// ArrayFrame: writes NumPy-array messages that shmlink.Ring.recv_array() (Python) receives
// without a copy. Header-only; the frame layout is documented in python/shmlink/_ring.py:
//
//   "SHMA" | u8 version=1 | u8 ndim | u16 dtype_len | u32 data_offset | dtype | u64 shape[]
//   | zero padding to data_offset (multiple of 64) | C-contiguous data
//
//   auto tx = ring->Producer();
//   size_t n = ArrayFrameSize("<f8", {rows, cols}, sizeof(double));  // item size last
//   auto buf = tx->reserve(n);                       // span in the ring
//   double* data = WriteArrayFrame<double>(*buf, "<f8", {rows, cols});  // header
//   fill(data, rows * cols);                         // write the payload in place
//   tx->commit();
//
// dtype strings are NumPy's dtype.str: "<f8" (little-endian float64), "<i4", "|u1", ...
// Thread safety: pure functions.
#ifndef SHMLINK_PYTHON_INCLUDE_SHMLINK_ARRAY_H_
#define SHMLINK_PYTHON_INCLUDE_SHMLINK_ARRAY_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <span>
#include <string_view>

namespace shmlink::python {

inline constexpr size_t kArrayFixedHeader = 12;

inline size_t ArrayHeaderSize(std::string_view dtype, size_t ndim) {
  size_t body = kArrayFixedHeader + dtype.size() + 8 * ndim;
  return (body + 63) / 64 * 64;
}

// Total message size for an array of `shape` whose elements are `itemsize` bytes.
inline size_t ArrayFrameSize(std::string_view dtype, std::initializer_list<uint64_t> shape,
                             size_t itemsize) {
  size_t count = 1;
  for (uint64_t s : shape) count *= s;
  return ArrayHeaderSize(dtype, shape.size()) + count * itemsize;
}

// Writes the header at the start of `frame` (sized by ArrayFrameSize) and returns where
// the data goes. Little-endian hosts only (x86-64, aarch64).
inline std::byte* WriteArrayHeader(std::span<std::byte> frame, std::string_view dtype,
                                   std::initializer_list<uint64_t> shape) {
  const size_t offset = ArrayHeaderSize(dtype, shape.size());
  std::byte* p = frame.data();
  std::memset(p, 0, offset);
  std::memcpy(p, "SHMA", 4);
  p[4] = std::byte{1};
  p[5] = static_cast<std::byte>(shape.size());
  const auto dlen = static_cast<uint16_t>(dtype.size());
  const auto off32 = static_cast<uint32_t>(offset);
  std::memcpy(p + 6, &dlen, 2);
  std::memcpy(p + 8, &off32, 4);
  std::memcpy(p + kArrayFixedHeader, dtype.data(), dtype.size());
  size_t at = kArrayFixedHeader + dtype.size();
  for (uint64_t s : shape) {
    std::memcpy(p + at, &s, 8);
    at += 8;
  }
  return p + offset;
}

template <typename T>
T* WriteArrayFrame(std::span<std::byte> frame, std::string_view dtype,
                   std::initializer_list<uint64_t> shape) {
  return reinterpret_cast<T*>(WriteArrayHeader(frame, dtype, shape));
}

}  // namespace shmlink::python

#endif  // SHMLINK_PYTHON_INCLUDE_SHMLINK_ARRAY_H_
