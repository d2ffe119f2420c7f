// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The pickler: encodes a Value with the opcodes CPython itself writes (protocols 2..5).
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

// Beyond max_depth this answers true: the encoder then reports kTooDeep for the key.
bool IsHashableKind(const Value& v, int depth, int max_depth) {
  if (depth > max_depth) return true;
  switch (v.kind()) {
    case Value::Kind::kList:
    case Value::Kind::kDict:
    case Value::Kind::kSet:
    case Value::Kind::kByteArray:
      return false;
    case Value::Kind::kTuple:
      for (const auto& x : v.items())
        if (!IsHashableKind(x, depth + 1, max_depth)) return false;
      return true;
    default:
      return true;
  }
}

}  // namespace

namespace {

class Encoder {
 public:
  Encoder(std::vector<std::byte>* out, int protocol, const EncodeOptions& opts)
      : out_(out), proto_(protocol), opts_(opts) {}

  Status Write(const Value& v, int depth);

  void Op(char c) { out_->push_back(static_cast<std::byte>(c)); }
  void Raw(std::string_view s) {
    const auto* b = reinterpret_cast<const std::byte*>(s.data());
    out_->insert(out_->end(), b, b + s.size());
  }
  void LE(std::uint64_t v, int n) {
    for (int k = 0; k < n; ++k) out_->push_back(static_cast<std::byte>((v >> (8 * k)) & 0xff));
  }

 private:
  // A length-prefixed payload with the 1-, 4- or 8-byte length opcode.
  void Sized(std::string_view s, char op1, char op4, char op8) {
    if (s.size() < 256 && op1) {
      Op(op1);
      LE(s.size(), 1);
    } else if (s.size() <= 0xffffffffu || !op8) {
      Op(op4);
      LE(s.size(), 4);
    } else {
      Op(op8);
      LE(s.size(), 8);
    }
    Raw(s);
  }
  void Str(std::string_view s) {
    if (proto_ >= 4) {
      Sized(s, '\x8c', 'X', '\x8d');
    } else {
      Sized(s, 0, 'X', 0);
    }
  }
  void Global(std::string_view module, std::string_view name) {
    Op('c');
    Raw(module);
    Op('\n');
    Raw(name);
    Op('\n');
  }
  std::string_view Builtins() const { return proto_ >= 3 ? "builtins" : "__builtin__"; }
  void BytesPayload(std::string_view b) {
    if (proto_ >= 3) {
      Sized(b, 'C', 'B', proto_ >= 4 ? '\x8e' : 0);
    } else if (b.empty()) {
      Global(Builtins(), "bytes");  // CPython: bytes() at protocol 2
      Op(')');
      Op('R');
    } else {  // CPython: _codecs.encode('<latin-1 text>', 'latin1') at protocol 2
      Global("_codecs", "encode");
      std::string text;
      Latin1ToUtf8(b, &text);
      Str(text);
      Str("latin1");
      Op('\x86');
      Op('R');
    }
  }
  Status Items(const std::vector<Value>& xs, int depth) {
    for (const auto& x : xs)
      if (auto s = Write(x, depth + 1)) return s;
    return {};
  }
  // Batches of MARK items... `many` (CPython batches 1000), single item with `one`.
  Status Batched(const std::vector<Value>& xs, char one, char many, int depth) {
    for (std::size_t i = 0; i < xs.size(); i += 1000) {
      std::size_t n = std::min<std::size_t>(1000, xs.size() - i);
      if (n > 1 || !one) Op('(');
      for (std::size_t k = i; k < i + n; ++k)
        if (auto s = Write(xs[k], depth + 1)) return s;
      Op(n > 1 || !one ? many : one);
    }
    return {};
  }

  std::vector<std::byte>* out_;
  int proto_;
  const EncodeOptions& opts_;
};

Status Encoder::Write(const Value& v, int depth) {
  using K = Value::Kind;
  if (depth > opts_.max_depth) return make_error_code(PickleErrc::kTooDeep);
  switch (v.kind()) {
    case K::kNone:
      Op('N');
      return {};
    case K::kBool:
      Op(v.as_bool() ? '\x88' : '\x89');
      return {};
    case K::kInt: {
      if (v.fits_int64()) {
        const std::int64_t i = v.as_int();
        if (i >= 0 && i < 256) {
          Op('K');
          LE(static_cast<std::uint64_t>(i), 1);
          return {};
        }
        if (i >= 0 && i < 65536) {
          Op('M');
          LE(static_cast<std::uint64_t>(i), 2);
          return {};
        }
        if (i >= INT32_MIN && i <= INT32_MAX) {
          Op('J');
          LE(static_cast<std::uint32_t>(static_cast<std::int32_t>(i)), 4);
          return {};
        }
      }
      const std::string b = v.int_bytes();
      if (b.size() < 256) {
        Op('\x8a');
        LE(b.size(), 1);
      } else {
        if (b.size() > 0x7fffffffu) return make_error_code(PickleErrc::kTooLarge);
        Op('\x8b');
        LE(b.size(), 4);
      }
      Raw(b);
      return {};
    }
    case K::kFloat: {
      Op('G');
      const auto u = std::bit_cast<std::uint64_t>(v.as_float());
      for (int k = 7; k >= 0; --k) out_->push_back(static_cast<std::byte>((u >> (8 * k)) & 0xff));
      return {};
    }
    case K::kStr:
      if (!ValidUtf8(v.str())) return make_error_code(PickleErrc::kInvalidUtf8);
      if (proto_ < 4 && v.str().size() > 0xffffffffu) return make_error_code(PickleErrc::kTooLarge);
      Str(v.str());
      return {};
    case K::kBytes:
      if (proto_ < 4 && v.bytes().size() > 0xffffffffu)
        return make_error_code(PickleErrc::kTooLarge);
      BytesPayload(v.bytes());
      return {};
    case K::kByteArray:
      if (proto_ >= 5) {
        Op('\x96');
        LE(v.bytes().size(), 8);
        Raw(v.bytes());
        return {};
      }
      if (proto_ < 4 && v.bytes().size() > 0xffffffffu)
        return make_error_code(PickleErrc::kTooLarge);
      Global(Builtins(), "bytearray");  // CPython: bytearray(b'...') below protocol 5
      if (v.bytes().empty()) {
        Op(')');
      } else {
        BytesPayload(v.bytes());
        Op('\x85');
      }
      Op('R');
      return {};
    case K::kList:
      Op(']');
      return Batched(v.items(), 'a', 'e', depth);
    case K::kTuple: {
      const auto& xs = v.items();
      if (xs.empty()) {
        Op(')');
        return {};
      }
      if (xs.size() > 3) Op('(');
      if (auto s = Items(xs, depth)) return s;
      Op(xs.size() == 1 ? '\x85' : xs.size() == 2 ? '\x86' : xs.size() == 3 ? '\x87' : 't');
      return {};
    }
    case K::kDict: {
      Op('}');
      const auto& es = v.entries();
      for (const auto& e : es)
        if (!IsHashableKind(e.first, depth + 1, opts_.max_depth))
          return make_error_code(PickleErrc::kUnhashable);
      for (std::size_t i = 0; i < es.size(); i += 1000) {
        std::size_t n = std::min<std::size_t>(1000, es.size() - i);
        if (n > 1) Op('(');
        for (std::size_t k = i; k < i + n; ++k) {
          if (auto s = Write(es[k].first, depth + 1)) return s;
          if (auto s = Write(es[k].second, depth + 1)) return s;
        }
        Op(n > 1 ? 'u' : 's');
      }
      return {};
    }
    case K::kSet:
    case K::kFrozenSet: {
      const bool frozen = v.kind() == K::kFrozenSet;
      for (const auto& x : v.items())
        if (!IsHashableKind(x, depth + 1, opts_.max_depth))
          return make_error_code(PickleErrc::kUnhashable);
      if (proto_ >= 4) {
        if (frozen) {
          Op('(');
          if (auto s = Items(v.items(), depth)) return s;
          Op('\x91');
          return {};
        }
        Op('\x8f');
        for (std::size_t i = 0; i < v.items().size(); i += 1000) {
          std::size_t n = std::min<std::size_t>(1000, v.items().size() - i);
          Op('(');
          for (std::size_t k = i; k < i + n; ++k)
            if (auto s = Write(v.items()[k], depth + 1)) return s;
          Op('\x90');
        }
        return {};
      }
      // CPython below protocol 4: set([...]) / frozenset([...]) via REDUCE.
      Global(Builtins(), frozen ? "frozenset" : "set");
      Op(']');
      if (auto s = Batched(v.items(), 'a', 'e', depth)) return s;
      Op('\x85');
      Op('R');
      return {};
    }
  }
  return make_error_code(PickleErrc::kMalformed);
}

}  // namespace

Expected<void> EncodeAppend(const Value& v, std::vector<std::byte>* out, int protocol,
                            const EncodeOptions& options) {
  if (protocol < 2 || protocol > 5) return PickleErrc::kBadProtocol;
  const std::size_t start = out->size();
  Encoder e(out, protocol, options);
  e.Op('\x80');
  e.LE(static_cast<std::uint64_t>(protocol), 1);
  std::size_t frame_at = 0;
  if (protocol >= 4) {
    e.Op('\x95');
    frame_at = out->size();
    e.LE(0, 8);  // patched below
  }
  if (auto s = e.Write(v, 1)) {
    out->resize(start);
    return MakeUnexpected(s);
  }
  e.Op('.');
  if (protocol >= 4) {
    const std::uint64_t len = out->size() - frame_at - 8;
    for (int k = 0; k < 8; ++k)
      (*out)[frame_at + k] = static_cast<std::byte>((len >> (8 * k)) & 0xff);
  }
  return {};
}

Expected<std::vector<std::byte>> Encode(const Value& v, int protocol) {
  std::vector<std::byte> out;
  if (auto r = EncodeAppend(v, &out, protocol); !r) return MakeUnexpected(r.error());
  return out;
}

}  // namespace shmlink::pickle
