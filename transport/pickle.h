// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// shmlink::pickle: a safe codec for the data subset of Python's pickle format (protocols
// 2..5), so that a C++ peer can exchange objects with Python's multiprocessing.connection
// (`conn.send(obj)` pickles `obj`; `conn.recv()` unpickles).
//
// Supported objects: None, bool, int (any size), float, str, bytes, bytearray, list, tuple,
// dict, set, frozenset. Decoding never looks up or calls anything: GLOBAL, STACK_GLOBAL,
// REDUCE and friends are rejected with PickleErrc::kUnsupported, except for the handful of
// fixed patterns CPython itself emits for sets, frozensets, bytes and bytearrays at
// protocols 2..4 (`builtins.set(list)`, `_codecs.encode(str, 'latin1')`, ...), which are
// recognised as data, not executed. See docs/pickle.md for the full subset and the limits.
//
// Thread-safety: Decode and Encode are pure functions (any-thread). Value is a plain value
// type (not-thread-safe for concurrent mutation, like std::vector).
#ifndef SHMLINK_TRANSPORT_PICKLE_H_
#define SHMLINK_TRANSPORT_PICKLE_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <shmlink/expected.h>

namespace shmlink::pickle {

// Errors of Decode/Encode, in the std::error_category "shmlink.pickle". None of them is
// retryable with the same input; all leave no state behind (the codec is stateless, so a
// connection that received a bad pickle stays usable).
enum class PickleErrc : int {
  // 0 is reserved for "no error".
  kUnsupported = 1,  // A valid pickle of something outside the subset: GLOBAL/STACK_GLOBAL/
                     // REDUCE of anything but the recognised set/frozenset/bytes/bytearray
                     // patterns, INST/OBJ/NEWOBJ/NEWOBJ_EX/BUILD/PERSID/BINPERSID/EXT1/2/4,
                     // out-of-band buffers (NEXT_BUFFER/READONLY_BUFFER), protocol-0 STRING,
                     // or a recursive (self-containing) structure.
  kMalformed,        // Not a valid pickle: unknown opcode, stack underflow, missing memo
                     // entry, wrong operand type (e.g. APPEND to a non-list), bad number text.
  kTruncated,        // The data ends before STOP or inside an opcode's argument, or a
                     // declared length (string, frame) exceeds the remaining data.
  kTooDeep,          // Nesting deeper than the depth limit (DecodeOptions/EncodeOptions).
  kTooLarge,         // A limit on decoded size was hit (DecodeOptions values/bytes, 4300
                     // int digits, or REDUCE re-using one memoized object over and over).
  kBadProtocol,      // PROTO > 5 in the data, or Encode asked for a protocol outside 2..5.
  kUnhashable,       // A dict key or set element that Python cannot hash (list, dict, set,
                     // bytearray, or a tuple containing one).
  kInvalidUtf8,      // A str that is not UTF-8 (lone surrogates, as CPython writes them with
                     // 'surrogatepass', are accepted), or a bad \u escape in UNICODE.
};

const std::error_category& PickleCategory() noexcept;

inline std::error_code make_error_code(PickleErrc e) noexcept {
  return {static_cast<int>(e), PickleCategory()};
}

// A Python value from the supported subset. A tree: containers own their elements (shared
// references inside a pickle, e.g. `[x, x]`, decode as two equal copies).
//
// Ints: values that fit in int64_t are stored as int64_t (as_int()); larger ones as the
// minimal two's-complement little-endian byte string (the LONG1/LONG4 encoding; see
// int_bytes()). The representation is canonical, so operator== on ints compares values.
class Value {
 public:
  enum class Kind : std::uint8_t {
    kNone,
    kBool,
    kInt,
    kFloat,
    kStr,        // UTF-8 text (std::string)
    kBytes,      // raw bytes (std::string used as a byte container)
    kByteArray,  // raw bytes, mutable in Python
    kList,
    kTuple,
    kDict,  // ordered key/value pairs (insertion order, as Python dicts)
    kSet,
    kFrozenSet,
  };
  using Entry = std::pair<Value, Value>;

  // Default: None.
  Value() = default;

  // Factories. Any-thread.
  static Value None() { return Value(); }
  static Value Bool(bool b);
  static Value Int(std::int64_t i);
  // Int from two's-complement little-endian bytes of any length (empty = 0).
  static Value IntFromBytes(std::string_view le_twos_complement);
  // Int from decimal text: optional sign, then 1..4300 digits (CPython's default limit).
  // Errors: kMalformed (not a decimal integer), kTooLarge (more than 4300 digits).
  [[nodiscard]] static Expected<Value> IntFromDecimal(std::string_view text);
  static Value Float(double d);
  // The caller vouches that `utf8` is UTF-8; Encode checks it (kInvalidUtf8).
  static Value Str(std::string utf8);
  static Value Bytes(std::string data);
  static Value Bytes(std::span<const std::byte> data);
  static Value ByteArray(std::string data);
  static Value ByteArray(std::span<const std::byte> data);
  static Value List(std::vector<Value> items);
  static Value Tuple(std::vector<Value> items);
  static Value Dict(std::vector<Entry> entries);
  static Value Set(std::vector<Value> items);
  static Value FrozenSet(std::vector<Value> items);

  Kind kind() const noexcept { return kind_; }
  bool is_none() const noexcept { return kind_ == Kind::kNone; }
  bool is_bool() const noexcept { return kind_ == Kind::kBool; }
  bool is_int() const noexcept { return kind_ == Kind::kInt; }
  bool is_float() const noexcept { return kind_ == Kind::kFloat; }
  bool is_str() const noexcept { return kind_ == Kind::kStr; }
  bool is_bytes() const noexcept { return kind_ == Kind::kBytes; }
  bool is_bytearray() const noexcept { return kind_ == Kind::kByteArray; }
  bool is_list() const noexcept { return kind_ == Kind::kList; }
  bool is_tuple() const noexcept { return kind_ == Kind::kTuple; }
  bool is_dict() const noexcept { return kind_ == Kind::kDict; }
  bool is_set() const noexcept { return kind_ == Kind::kSet; }
  bool is_frozenset() const noexcept { return kind_ == Kind::kFrozenSet; }
  // True for an int that fits in int64_t.
  bool fits_int64() const noexcept { return kind_ == Kind::kInt && !big_; }
  // True for list, tuple, set, frozenset (the kinds with items()).
  bool has_items() const noexcept;

  // Accessors. Calling one on the wrong kind is a contract violation: it prints what was
  // wrong and aborts (checked in all builds), like Expected::value() on an error.
  bool as_bool() const;
  std::int64_t as_int() const;  // @pre fits_int64()
  double as_float() const;
  const std::string& str() const;                // @pre is_str()
  const std::string& bytes() const;              // @pre is_bytes() || is_bytearray()
  std::span<const std::byte> byte_span() const;  // same, as bytes
  // Two's-complement little-endian bytes of an int (minimal length; 0 -> empty).
  std::string int_bytes() const;  // @pre is_int()
  // Decimal text of an int, any size.
  std::string int_decimal() const;          // @pre is_int()
  const std::vector<Value>& items() const;  // @pre has_items()
  std::vector<Value>& items();
  const std::vector<Entry>& entries() const;  // @pre is_dict()
  std::vector<Entry>& entries();
  // Dict lookup by key (operator== on keys); nullptr if absent. @pre is_dict()
  const Value* Find(const Value& key) const;

  // Structural equality: same kind and equal contents. Floats compare with ==, except that
  // NaN equals NaN (so a decode/encode round trip compares equal). dict, set and frozenset
  // compare as Python does, ignoring order. No cross-kind equality (1 != True != 1.0,
  // bytes != bytearray, set != frozenset), unlike Python.
  friend bool operator==(const Value& a, const Value& b);
  friend bool operator!=(const Value& a, const Value& b) { return !(a == b); }

  // Python-repr-like text for debugging and test messages, e.g. "['a', 2.5, None]".
  std::string ToString() const;

 private:
  Kind kind_ = Kind::kNone;
  bool big_ = false;  // kInt stored in bytes_ (more than 8 bytes)
  union {
    bool bool_;
    std::int64_t int_;
    double float_;
  } scalar_ = {false};
  std::string bytes_;           // kStr, kBytes, kByteArray, big kInt
  std::vector<Value> items_;    // kList, kTuple, kSet, kFrozenSet
  std::vector<Entry> entries_;  // kDict
};

// Limits of Decode. Decode's own working memory is O(input size); these bound the result.
struct DecodeOptions {
  // Maximum container nesting of the result (a scalar at top level is depth 1).
  int max_depth = 1000;
  // Maximum number of Values in the result (shared references count once per copy, so a
  // tiny pickle that references one list 2^64 times fails here with kTooLarge). Decoding
  // also needs up to 8 working nodes (~56 bytes each) per value for the protocol-2 forms
  // of bytes/bytearray; more than 8 * max_values nodes is kTooLarge too.
  std::size_t max_values = std::size_t{1} << 22;
  // Maximum total bytes of str/bytes/bytearray/int payloads in the result.
  std::size_t max_bytes = std::size_t{1} << 31;
};

// Decodes one pickle (protocol 0..5 opcodes, as listed in docs/pickle.md) ending in STOP.
// Bytes after STOP are ignored, as pickle.loads does.
// Errors: kUnsupported (objects outside the subset; nothing is ever looked up or called),
// kMalformed, kTruncated, kTooDeep / kTooLarge (DecodeOptions limits), kBadProtocol (PROTO
// > 5), kUnhashable, kInvalidUtf8. Never crashes, reads out of bounds or allocates more than
// O(data.size()) plus the result, whatever `data` holds. `data` is not retained: the Value
// owns copies. Any-thread.
[[nodiscard]] Expected<Value> Decode(std::span<const std::byte> data);
[[nodiscard]] Expected<Value> Decode(std::span<const std::byte> data, const DecodeOptions& options);

struct EncodeOptions {
  int max_depth = 1000;  // deeper Values fail with kTooDeep (the encoder recurses)
};

// Encodes `v` as a pickle of the given protocol (2..5) that CPython's pickle.loads reads
// back as an equal object. Protocols >= 4 put everything in one FRAME. At protocols 2..3,
// set/frozenset/bytearray (and bytes at 2) are written the way CPython writes them, as
// REDUCE of builtins (the reader then calls set(), bytearray(), _codecs.encode()).
// Errors: kBadProtocol, kTooDeep, kUnhashable (dict key / set element), kInvalidUtf8 (str).
// Any-thread.
[[nodiscard]] Expected<std::vector<std::byte>> Encode(const Value& v, int protocol = 4);
// Appends the pickle to *out (e.g. after a frame header). On error *out is restored to its
// original size.
[[nodiscard]] Expected<void> EncodeAppend(const Value& v, std::vector<std::byte>* out,
                                          int protocol = 4, const EncodeOptions& options = {});

// Convenience for byte containers held in std::string (e.g. a received frame).
inline std::span<const std::byte> AsBytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace shmlink::pickle

template <>
struct std::is_error_code_enum<shmlink::pickle::PickleErrc> : std::true_type {};

#endif  // SHMLINK_TRANSPORT_PICKLE_H_
