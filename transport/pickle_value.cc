// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The pickle value model: Value's factories, accessors, equality and repr, and the
// shmlink.pickle error category.
#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <forward_list>
#include <unordered_map>

#include "transport/pickle_conversions.h"

#include <shmlink/pickle.h>

namespace shmlink::pickle {

using internal::AppendUtf8;
using internal::DecimalToTwos;
using internal::Int64ToTwos;
using internal::Latin1ToUtf8;
using internal::MinimizeTwos;
using internal::NegateTwos;
using internal::Status;
using internal::TwosToDecimal;
using internal::Utf8ToLatin1;
using internal::ValidUtf8;

namespace {

class PickleCategoryImpl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "shmlink.pickle"; }
  std::string message(int ev) const override {
    switch (static_cast<PickleErrc>(ev)) {
      case PickleErrc::kUnsupported:
        return "pickle holds an unsupported object (only None/bool/int/float/str/bytes/"
               "bytearray/list/tuple/dict/set are decoded; nothing is looked up or called)";
      case PickleErrc::kMalformed:
        return "malformed pickle";
      case PickleErrc::kTruncated:
        return "pickle data truncated";
      case PickleErrc::kTooDeep:
        return "pickle nesting exceeds the depth limit";
      case PickleErrc::kTooLarge:
        return "pickle exceeds a size limit";
      case PickleErrc::kBadProtocol:
        return "unsupported pickle protocol";
      case PickleErrc::kUnhashable:
        return "unhashable dict key or set element";
      case PickleErrc::kInvalidUtf8:
        return "str is not valid UTF-8";
    }
    return "unknown shmlink.pickle error " + std::to_string(ev);
  }
};

[[noreturn]] void Misuse(const char* what) {
  std::fprintf(stderr, "shmlink::pickle::Value misuse: %s\n", what);
  std::abort();
}

}  // namespace

const std::error_category& PickleCategory() noexcept {
  static const PickleCategoryImpl kCategory;
  return kCategory;
}

Value Value::Bool(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.scalar_.bool_ = b;
  return v;
}

Value Value::Int(std::int64_t i) {
  Value v;
  v.kind_ = Kind::kInt;
  v.scalar_.int_ = i;
  return v;
}

Value Value::IntFromBytes(std::string_view le) {
  std::string b(le);
  MinimizeTwos(&b);
  if (b.size() <= 8) {
    std::uint64_t u = 0;
    for (std::size_t i = 0; i < b.size(); ++i)
      u |= std::uint64_t{static_cast<unsigned char>(b[i])} << (8 * i);
    if (!b.empty() && (static_cast<unsigned char>(b.back()) & 0x80) && b.size() < 8)
      u |= ~std::uint64_t{0} << (8 * b.size());  // sign-extend
    return Int(static_cast<std::int64_t>(u));
  }
  Value v;
  v.kind_ = Kind::kInt;
  v.big_ = true;
  v.bytes_ = std::move(b);
  return v;
}

Expected<Value> Value::IntFromDecimal(std::string_view text) {
  auto b = DecimalToTwos(text);
  if (!b) return MakeUnexpected(b.error());
  return IntFromBytes(*b);
}

Value Value::Float(double d) {
  Value v;
  v.kind_ = Kind::kFloat;
  v.scalar_.float_ = d;
  return v;
}

Value Value::Str(std::string utf8) {
  Value v;
  v.kind_ = Kind::kStr;
  v.bytes_ = std::move(utf8);
  return v;
}

Value Value::Bytes(std::string data) {
  Value v;
  v.kind_ = Kind::kBytes;
  v.bytes_ = std::move(data);
  return v;
}

Value Value::Bytes(std::span<const std::byte> data) {
  return Bytes(std::string(reinterpret_cast<const char*>(data.data()), data.size()));
}

Value Value::ByteArray(std::string data) {
  Value v = Bytes(std::move(data));
  v.kind_ = Kind::kByteArray;
  return v;
}

Value Value::ByteArray(std::span<const std::byte> data) {
  return ByteArray(std::string(reinterpret_cast<const char*>(data.data()), data.size()));
}

#define SHMLINK_CONTAINER_FACTORY(Name, K)      \
  Value Value::Name(std::vector<Value> items) { \
    Value v;                                    \
    v.kind_ = Kind::K;                          \
    v.items_ = std::move(items);                \
    return v;                                   \
  }
SHMLINK_CONTAINER_FACTORY(List, kList)
SHMLINK_CONTAINER_FACTORY(Tuple, kTuple)
SHMLINK_CONTAINER_FACTORY(Set, kSet)
SHMLINK_CONTAINER_FACTORY(FrozenSet, kFrozenSet)
#undef SHMLINK_CONTAINER_FACTORY

Value Value::Dict(std::vector<Entry> entries) {
  Value v;
  v.kind_ = Kind::kDict;
  v.entries_ = std::move(entries);
  return v;
}

bool Value::has_items() const noexcept {
  return kind_ == Kind::kList || kind_ == Kind::kTuple || kind_ == Kind::kSet ||
         kind_ == Kind::kFrozenSet;
}

bool Value::as_bool() const {
  if (kind_ != Kind::kBool) Misuse("as_bool() on a non-bool");
  return scalar_.bool_;
}
std::int64_t Value::as_int() const {
  if (!fits_int64()) Misuse("as_int() on a non-int or an int beyond int64");
  return scalar_.int_;
}
double Value::as_float() const {
  if (kind_ != Kind::kFloat) Misuse("as_float() on a non-float");
  return scalar_.float_;
}
const std::string& Value::str() const {
  if (kind_ != Kind::kStr) Misuse("str() on a non-str");
  return bytes_;
}
const std::string& Value::bytes() const {
  if (kind_ != Kind::kBytes && kind_ != Kind::kByteArray) Misuse("bytes() on a non-bytes");
  return bytes_;
}
std::span<const std::byte> Value::byte_span() const { return AsBytes(bytes()); }
std::string Value::int_bytes() const {
  if (kind_ != Kind::kInt) Misuse("int_bytes() on a non-int");
  return big_ ? bytes_ : Int64ToTwos(scalar_.int_);
}
std::string Value::int_decimal() const {
  if (kind_ != Kind::kInt) Misuse("int_decimal() on a non-int");
  return big_ ? TwosToDecimal(bytes_) : std::to_string(scalar_.int_);
}
const std::vector<Value>& Value::items() const {
  if (!has_items()) Misuse("items() on a non-sequence");
  return items_;
}
std::vector<Value>& Value::items() {
  if (!has_items()) Misuse("items() on a non-sequence");
  return items_;
}
const std::vector<Value::Entry>& Value::entries() const {
  if (kind_ != Kind::kDict) Misuse("entries() on a non-dict");
  return entries_;
}
std::vector<Value::Entry>& Value::entries() {
  if (kind_ != Kind::kDict) Misuse("entries() on a non-dict");
  return entries_;
}
const Value* Value::Find(const Value& key) const {
  for (const auto& e : entries())
    if (e.first == key) return &e.second;
  return nullptr;
}

namespace {
// Order-insensitive multiset comparison (fast path when the order matches).
bool SameElements(const std::vector<Value>& a, const std::vector<Value>& b) {
  if (a.size() != b.size()) return false;
  if (std::equal(a.begin(), a.end(), b.begin())) return true;
  std::vector<bool> used(b.size(), false);
  for (const auto& x : a) {
    bool found = false;
    for (std::size_t j = 0; j < b.size(); ++j) {
      if (!used[j] && x == b[j]) {
        used[j] = found = true;
        break;
      }
    }
    if (!found) return false;
  }
  return true;
}
}  // namespace

bool operator==(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.kind_ != b.kind_) return false;
  switch (a.kind_) {
    case K::kNone:
      return true;
    case K::kBool:
      return a.scalar_.bool_ == b.scalar_.bool_;
    case K::kInt:
      if (a.big_ != b.big_) return false;
      return a.big_ ? a.bytes_ == b.bytes_ : a.scalar_.int_ == b.scalar_.int_;
    case K::kFloat:
      return a.scalar_.float_ == b.scalar_.float_ ||
             (std::isnan(a.scalar_.float_) && std::isnan(b.scalar_.float_));
    case K::kStr:
    case K::kBytes:
    case K::kByteArray:
      return a.bytes_ == b.bytes_;
    case K::kList:
    case K::kTuple:
      return a.items_ == b.items_;
    case K::kSet:
    case K::kFrozenSet:
      return SameElements(a.items_, b.items_);
    case K::kDict: {
      if (a.entries_.size() != b.entries_.size()) return false;
      if (a.entries_ == b.entries_) return true;
      for (const auto& e : a.entries_) {
        const Value* other = b.Find(e.first);
        if (other == nullptr || !(*other == e.second)) return false;
      }
      return true;
    }
  }
  return false;
}

namespace {

void ReprQuoted(std::string_view s, bool is_bytes, std::string* out) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char q = (has_single && !has_double) ? '"' : '\'';
  out->push_back(q);
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '\\' || c == static_cast<unsigned char>(q)) {
      out->push_back('\\');
      out->push_back(ch);
    } else if (c == '\n') {
      *out += "\\n";
    } else if (c == '\r') {
      *out += "\\r";
    } else if (c == '\t') {
      *out += "\\t";
    } else if (c < 0x20 || c == 0x7f || (is_bytes && c >= 0x80)) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      *out += buf;
    } else {
      out->push_back(ch);  // printable ASCII, or UTF-8 of a str kept as is
    }
  }
  out->push_back(q);
}

void Repr(const Value& v, std::string* out, int depth) {
  using K = Value::Kind;
  if (depth > 2000) {
    *out += "...";
    return;
  }
  auto seq = [&](const std::vector<Value>& xs) {
    for (std::size_t i = 0; i < xs.size(); ++i) {
      if (i) *out += ", ";
      Repr(xs[i], out, depth + 1);
    }
  };
  switch (v.kind()) {
    case K::kNone:
      *out += "None";
      break;
    case K::kBool:
      *out += v.as_bool() ? "True" : "False";
      break;
    case K::kInt: {
      std::string b = v.int_bytes();
      if (b.size() > 1800) {
        *out += "<int of " + std::to_string(b.size()) + " bytes>";
      } else {
        *out += v.int_decimal();
      }
      break;
    }
    case K::kFloat: {
      double d = v.as_float();
      if (std::isnan(d)) {
        *out += "nan";
      } else if (std::isinf(d)) {
        *out += d < 0 ? "-inf" : "inf";
      } else {
        char buf[64];
        auto r = std::to_chars(buf, buf + sizeof buf, d);
        std::string s(buf, r.ptr);
        if (s.find_first_of(".e") == std::string::npos) s += ".0";
        *out += s;
      }
      break;
    }
    case K::kStr:
      ReprQuoted(v.str(), false, out);
      break;
    case K::kBytes:
      out->push_back('b');
      ReprQuoted(v.bytes(), true, out);
      break;
    case K::kByteArray:
      *out += "bytearray(b";
      ReprQuoted(v.bytes(), true, out);
      *out += ")";
      break;
    case K::kList:
      *out += "[";
      seq(v.items());
      *out += "]";
      break;
    case K::kTuple:
      *out += "(";
      seq(v.items());
      if (v.items().size() == 1) *out += ",";
      *out += ")";
      break;
    case K::kSet:
      if (v.items().empty()) {
        *out += "set()";
      } else {
        *out += "{";
        seq(v.items());
        *out += "}";
      }
      break;
    case K::kFrozenSet:
      *out += "frozenset(";
      if (!v.items().empty()) {
        *out += "{";
        seq(v.items());
        *out += "}";
      }
      *out += ")";
      break;
    case K::kDict: {
      *out += "{";
      bool first = true;
      for (const auto& e : v.entries()) {
        if (!first) *out += ", ";
        first = false;
        Repr(e.first, out, depth + 1);
        *out += ": ";
        Repr(e.second, out, depth + 1);
      }
      *out += "}";
      break;
    }
  }
}

}  // namespace

std::string Value::ToString() const {
  std::string out;
  Repr(*this, &out, 0);
  return out;
}

}  // namespace shmlink::pickle
