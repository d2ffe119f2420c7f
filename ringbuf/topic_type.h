// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// TopicType: the identity of a typed topic's message type (size, alignment, name hash),
// recorded in the segment at creation and checked by every typed attach, loan, send and
// receive, so that a process built with another definition of the type gets
// kTypeMismatch instead of garbage.
//
//   struct Quote { double bid, ask; uint64_t ts; };
//   auto topic = Topic::Create<Quote>("/quotes", opts);   // or Topic::Attach<Quote>(...)
//
// The name defaults to the type's qualified name as the compiler spells it (e.g.
// "feed::Quote"); GCC and Clang agree on it for ordinary class types. To share a topic with
// code that names the type differently (another language, another namespace), specialise
// TopicTypeName<T> or pass TopicType::Named(name, size, align). The hash is FNV-1a 64 of
// the name (never 0). Only trivially copyable types qualify: their bytes are the message.
#ifndef SHMLINK_RINGBUF_TOPIC_TYPE_H_
#define SHMLINK_RINGBUF_TOPIC_TYPE_H_

#include <cstdint>
#include <string_view>
#include <type_traits>

namespace shmlink {

struct TopicType {
  uint32_t size = 0;   // sizeof(T); 0: untyped topic
  uint32_t align = 0;  // alignof(T) (at most 16)
  uint64_t hash = 0;   // FNV-1a 64 of the type's name

  static constexpr uint64_t HashName(std::string_view name) noexcept {
    uint64_t h = 0xcbf29ce484222325ull;
    for (char c : name) {
      h ^= static_cast<unsigned char>(c);
      h *= 0x100000001b3ull;
    }
    return h == 0 ? 1 : h;
  }
  static constexpr TopicType Named(std::string_view name, uint32_t size, uint32_t align) noexcept {
    return {size, align, HashName(name)};
  }
  constexpr bool typed() const noexcept { return size != 0; }
  friend constexpr bool operator==(const TopicType&, const TopicType&) = default;
};

namespace internal {
// "T = ns::Name" out of __PRETTY_FUNCTION__ (GCC: "... [with T = ns::Name]"; Clang:
// "... [T = ns::Name]").
template <typename T>
constexpr std::string_view PrettyTypeName() noexcept {
  std::string_view f = __PRETTY_FUNCTION__;
  const auto start = f.find("T = ");
  if (start == std::string_view::npos) return f;
  f.remove_prefix(start + 4);
  const auto end = f.find_first_of(";]");
  return end == std::string_view::npos ? f : f.substr(0, end);
}
}  // namespace internal

// Specialise to give T a stable cross-language name.
template <typename T>
struct TopicTypeName {
  static constexpr std::string_view value = internal::PrettyTypeName<T>();
};

template <typename T>
constexpr TopicType TopicTypeOf() noexcept {
  static_assert(std::is_trivially_copyable_v<T>, "topic messages are raw bytes");
  static_assert(alignof(T) <= 16, "topic payloads are 16-byte aligned");
  return TopicType::Named(TopicTypeName<T>::value, sizeof(T), alignof(T));
}

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_TOPIC_TYPE_H_
