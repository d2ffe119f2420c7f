// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Expected<T>: the result type of every fallible shmlink call on a hot path.
//
// Holds either a value of type T or a std::error_code (never both, never neither).
// std::expected is C++23 and clang-14 (used for libFuzzer) lacks it, so shmlink keeps
// this small in-house version. Accessing value() of an error result, or error() of a
// value result, is a contract violation and terminates (it is checked in all builds).
#ifndef SHMLINK_RINGBUF_EXPECTED_H_
#define SHMLINK_RINGBUF_EXPECTED_H_

#include <cstdio>
#include <cstdlib>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

namespace shmlink {

namespace internal {
[[noreturn]] inline void ExpectedMisuse(const char* what) noexcept {
  std::fprintf(stderr, "shmlink: Expected misuse: %s\n", what);
  std::abort();
}
}  // namespace internal

// Tag wrapper so that Expected<std::error_code> stays unambiguous.
struct Unexpected {
  std::error_code error;
};

inline Unexpected MakeUnexpected(std::error_code ec) noexcept { return Unexpected{ec}; }

template <typename T>
class [[nodiscard]] Expected {
 public:
  using value_type = T;

  Expected(const T& v) : storage_(std::in_place_index<0>, v) {}                   // NOLINT
  Expected(T&& v) : storage_(std::in_place_index<0>, std::move(v)) {}             // NOLINT
  Expected(Unexpected u) noexcept : storage_(std::in_place_index<1>, u.error) {}  // NOLINT
  // Any error enum registered with std::is_error_code_enum converts implicitly.
  template <typename E, typename = std::enable_if_t<std::is_error_code_enum_v<E>>>
  Expected(E e) noexcept : storage_(std::in_place_index<1>, make_error_code(e)) {}  // NOLINT

  bool has_value() const noexcept { return storage_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & {
    if (!has_value()) internal::ExpectedMisuse("value() on an error");
    return std::get<0>(storage_);
  }
  const T& value() const& {
    if (!has_value()) internal::ExpectedMisuse("value() on an error");
    return std::get<0>(storage_);
  }
  T&& value() && {
    if (!has_value()) internal::ExpectedMisuse("value() on an error");
    return std::get<0>(std::move(storage_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  std::error_code error() const noexcept {
    if (has_value()) return {};
    return std::get<1>(storage_);
  }

 private:
  std::variant<T, std::error_code> storage_;
};

template <>
class [[nodiscard]] Expected<void> {
 public:
  using value_type = void;
  Expected() noexcept = default;
  Expected(Unexpected u) noexcept : error_(u.error) {}  // NOLINT
  template <typename E, typename = std::enable_if_t<std::is_error_code_enum_v<E>>>
  Expected(E e) noexcept : error_(make_error_code(e)) {}  // NOLINT

  bool has_value() const noexcept { return !error_; }
  explicit operator bool() const noexcept { return has_value(); }
  void value() const {
    if (!has_value()) internal::ExpectedMisuse("value() on an error");
  }
  std::error_code error() const noexcept { return error_; }

 private:
  std::error_code error_;
};

// Error from errno, in std::system_category (e.g. EACCES from shm_open).
inline Unexpected ErrnoError(int err) noexcept {
  return Unexpected{std::error_code(err, std::system_category())};
}

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_EXPECTED_H_
