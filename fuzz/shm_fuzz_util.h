// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Helpers for the shared-memory fuzz targets: a byte reader over the fuzz input and ASan
// poisoning of the parts of a real mapping that the code under test must not touch.
//
// ASan has shadow memory for every application address, mmap'ed segments included, so
// poisoning the bytes a ring operation has no business reading or writing (the segment
// header, the other ring, the slack after the data region) turns an out-of-bounds access
// that stays inside the mapping into a reported error instead of a silent one.
#ifndef SHMLINK_FUZZ_SHM_FUZZ_UTIL_H_
#define SHMLINK_FUZZ_SHM_FUZZ_UTIL_H_

#include <sanitizer/asan_interface.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <system_error>

#include <shmlink/ring_error.h>

namespace shmlink::fuzz {

// Consumes the fuzz input front to back; past the end it yields zeros.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  size_t remaining() const { return pos_ < size_ ? size_ - pos_ : 0; }
  uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t u16() { return static_cast<uint16_t>(u8() | (u8() << 8)); }
  uint32_t u32() { return u16() | (uint32_t{u16()} << 16); }
  uint64_t u64() { return u32() | (uint64_t{u32()} << 32); }
  const uint8_t* rest() const { return data_ + (pos_ < size_ ? pos_ : size_); }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

[[noreturn]] inline void Fail(const char* what) {
  std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
  std::abort();
}

// Every error the data path returns must be typed: a RingErrc or an errno value.
inline void CheckTypedError(const std::error_code& ec) {
  if (!ec) Fail("error result without an error code");
  if (ec.category() != RingCategory() && ec.category() != std::system_category()) {
    Fail("error in an unexpected category");
  }
}

inline size_t PageRoundUp(size_t n) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return (n + page - 1) / page * page;
}

// Poisons [begin, end) of `base` (no-op for empty ranges).
inline void Poison(std::byte* base, size_t begin, size_t end) {
  if (end > begin) ASAN_POISON_MEMORY_REGION(base + begin, end - begin);
}
inline void Unpoison(std::byte* base, size_t begin, size_t end) {
  if (end > begin) ASAN_UNPOISON_MEMORY_REGION(base + begin, end - begin);
}

// Within a mapping of `mapped` bytes (rounded up to whole pages), leaves only the listed
// ranges accessible. Call UnpoisonAll before unmapping.
struct Allowed {
  size_t begin;
  size_t end;
};
inline void PoisonAllExcept(std::byte* base, size_t mapped, const Allowed* allowed, size_t n) {
  const size_t total = PageRoundUp(mapped);
  Poison(base, 0, total);
  for (size_t i = 0; i < n; ++i) Unpoison(base, allowed[i].begin, allowed[i].end);
}
inline void UnpoisonAll(std::byte* base, size_t mapped) { Unpoison(base, 0, PageRoundUp(mapped)); }

}  // namespace shmlink::fuzz

#endif  // SHMLINK_FUZZ_SHM_FUZZ_UTIL_H_
