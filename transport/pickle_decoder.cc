// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The unpickler: table-driven decoder of the pickle subset (protocols 2..5).
//
// Decoder design. The opcode table kOps maps each opcode byte to the kind of its inline
// argument and a handler. The dispatch loop reads the argument generically (bounds-checked,
// kTruncated when the data ends), then calls the handler. Handlers work on an arena of
// nodes indexed by uint32_t: the stack, the memo and container children hold indices, so a
// memoized list that is APPENDed to later is shared by reference exactly as in CPython.
// Nothing in the arena is recursive, so decoding itself never recurses. STOP materializes
// the arena graph into a Value tree (the only recursion, bounded by max_depth, with a
// budget of values and bytes against shared-reference blow-up, and cycle detection).
// Decode's working memory is O(input): every opcode consumes >= 1 byte and creates at most
// one node or one stack/child entry; declared lengths are checked against the remaining
// input before anything is allocated.
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

// Arena node. Node kinds extend Value::Kind with the recognised callables.
enum class NodeKind : std::uint8_t {
  kValue,     // a Value::Kind in `kind`
  kCallable,  // a recognised GLOBAL (see Callable); only valid as REDUCE's callable
};

enum class Callable : std::uint8_t { kSet, kFrozenSet, kByteArray, kBytes, kCodecsEncode };

struct Node {
  NodeKind node_kind = NodeKind::kValue;
  Value::Kind kind = Value::Kind::kNone;
  Callable callable = Callable::kSet;
  bool hashable = true;  // fixed at creation: containers' children never change for tuples
  bool owned = false;    // kInt: a big int whose two's-complement bytes are in `view`
  union {
    bool b;
    std::int64_t i;
    double f;
  } scalar = {false};
  std::string_view view;            // str/bytes/big-int payload: into the input or Decoder::owned_
  std::vector<std::uint32_t> kids;  // children; dict: key, value, key, value, ...

  std::string_view text() const { return view; }
};

enum class ArgKind : std::uint8_t {
  kNone,
  kU1,        // 1-byte unsigned
  kU2,        // 2-byte little-endian unsigned
  kI4,        // 4-byte little-endian signed
  kU4,        // 4-byte little-endian unsigned
  kU8,        // 8-byte little-endian unsigned
  kF8,        // 8-byte big-endian IEEE double
  kLine,      // bytes up to '\n' (newline excluded)
  kTwoLines,  // two '\n'-terminated lines (GLOBAL)
  kLen1,      // 1-byte length, then that many bytes
  kLen4,      // 4-byte unsigned length, then bytes
  kLenI4,     // 4-byte signed length (negative = malformed), then bytes
  kLen8,      // 8-byte length, then bytes
};

struct Arg {
  std::uint64_t u = 0;
  std::int64_t i = 0;
  double f = 0;
  std::string_view data;
  std::string_view data2;
};

class Decoder;
using Handler = Status (*)(Decoder&, const Arg&);

struct OpInfo {
  Handler handler = nullptr;  // nullptr: unknown opcode (kMalformed)
  ArgKind arg = ArgKind::kNone;
  bool unsupported = false;  // known opcode outside the subset (kUnsupported)
};

class Decoder {
 public:
  Decoder(std::span<const std::byte> data, const DecodeOptions& opts)
      : p_(reinterpret_cast<const char*>(data.data())), n_(data.size()), opts_(opts) {
    // Every opcode is >= 1 byte, so these never over-reserve beyond O(input).
    nodes_.reserve(std::min<std::size_t>(n_, 256));
    stack_.reserve(std::min<std::size_t>(n_, 64));
  }

  Expected<Value> Run();

  // ---- used by handlers ----
  static Status Err(PickleErrc e) { return make_error_code(e); }

  Expected<std::uint32_t> NewNode(Value::Kind k) {
    // The arena has at most one node per input byte; the protocol-2 forms of bytes and
    // bytearray (GLOBAL + args + REDUCE) need up to 8 nodes per resulting value, so a
    // budget of 8 * max_values never rejects what the budget on the result would accept.
    if (nodes_.size() / 8 >= opts_.max_values || nodes_.size() >= 0xfffffff0u)
      return PickleErrc::kTooLarge;
    nodes_.emplace_back();
    nodes_.back().kind = k;
    nodes_.back().hashable = !(k == Value::Kind::kList || k == Value::Kind::kDict ||
                               k == Value::Kind::kSet || k == Value::Kind::kByteArray);
    return static_cast<std::uint32_t>(nodes_.size() - 1);
  }
  Status Push(Value::Kind k, Node** out = nullptr) {
    auto id = NewNode(k);
    if (!id) return id.error();
    stack_.push_back(*id);
    if (out) *out = &nodes_[*id];
    return {};
  }
  std::size_t Floor() const { return marks_.empty() ? 0 : marks_.back(); }
  bool CanPop(std::size_t n = 1) const { return stack_.size() >= Floor() + n; }
  std::uint32_t Pop() {
    auto id = stack_.back();
    stack_.pop_back();
    return id;
  }
  Node& At(std::uint32_t id) { return nodes_[id]; }
  bool IsValueKind(std::uint32_t id, Value::Kind k) const {
    return nodes_[id].node_kind == NodeKind::kValue && nodes_[id].kind == k;
  }
  // Pops everything above the innermost mark, and the mark; returns the items.
  Status PopMark(std::vector<std::uint32_t>* items) {
    if (marks_.empty()) return Err(PickleErrc::kMalformed);
    std::size_t m = marks_.back();
    marks_.pop_back();
    items->assign(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return {};
  }
  Status CheckHashable(std::uint32_t id) const {
    return nodes_[id].hashable ? Status{} : Err(PickleErrc::kUnhashable);
  }
  // The memo: dense vector for the indices CPython writes (0, 1, 2, ... as it goes; any
  // index up to the input size, so memory stays O(input)), a map for anything sparser.
  static constexpr std::uint32_t kNoEntry = 0xffffffffu;
  Status MemoPut(std::uint64_t idx) {
    if (!CanPop()) return Err(PickleErrc::kMalformed);  // as CPython: not across a MARK
    if (idx <= n_) {
      if (idx >= memo_dense_.size())
        memo_dense_.resize(static_cast<std::size_t>(idx) + 1, kNoEntry);
      if (memo_dense_[idx] == kNoEntry) ++memo_count_;
      memo_dense_[idx] = stack_.back();
    } else {
      if (memo_sparse_.insert_or_assign(idx, stack_.back()).second) ++memo_count_;
    }
    return {};
  }
  Status MemoGet(std::uint64_t idx) {
    std::uint32_t id = kNoEntry;
    if (idx < memo_dense_.size()) {
      id = memo_dense_[idx];
    } else if (auto it = memo_sparse_.find(idx); it != memo_sparse_.end()) {
      id = it->second;
    }
    if (id == kNoEntry) return Err(PickleErrc::kMalformed);
    stack_.push_back(id);
    return {};
  }

  std::vector<Node> nodes_;
  std::vector<std::uint32_t> stack_;
  std::vector<std::size_t> marks_;
  std::vector<std::uint32_t> memo_dense_;
  std::unordered_map<std::uint64_t, std::uint32_t> memo_sparse_;
  std::size_t memo_count_ = 0;  // len(memo) in CPython terms (MEMOIZE's index)
  std::vector<std::uint32_t> scratch_;
  bool stopped_ = false;

  // Keeps text produced while decoding (escapes, latin-1 conversions, big ints) alive for
  // the nodes' string_views; a forward_list never moves its elements (and, unlike a deque,
  // allocates nothing until used).
  // Budget: CPython's pickles produce at most ~2 bytes of text per input byte this way
  // (UTF-8 of latin-1/escapes, big ints, each latin-1 str converted once); a pickle that
  // converts one memoized str over and over would otherwise cost O(n^2) memory.
  Expected<std::string_view> Own(std::string s) {
    if (s.size() > 2 * n_ + 64 - owned_bytes_) return PickleErrc::kTooLarge;
    owned_bytes_ += s.size();
    owned_.push_front(std::move(s));
    return std::string_view(owned_.front());
  }
  // Budget for children copied by REDUCE (set(list)): CPython copies each list once, so
  // at most one per input byte; re-reducing one memoized list must not be O(n^2).
  Status CountCopies(std::size_t k) {
    if (k > n_ - copied_) return Err(PickleErrc::kTooLarge);
    copied_ += k;
    return {};
  }
  std::forward_list<std::string> owned_;
  std::size_t owned_bytes_ = 0;  // <= 2 * n_ + 64
  std::size_t copied_ = 0;       // <= n_

 private:
  Status ReadArg(ArgKind kind, Arg* a);
  Status Materialize(std::uint32_t id, int depth, Value* out);

  const char* p_;
  std::size_t n_;
  std::size_t pos_ = 0;
  const DecodeOptions& opts_;
  std::size_t values_out_ = 0;
  std::size_t bytes_out_ = 0;
  std::vector<std::uint8_t> on_path_;
};

// ---- argument parsing helpers ----

std::uint64_t LoadLE(const char* p, int n) {
  std::uint64_t v = 0;
  for (int k = 0; k < n; ++k) v |= std::uint64_t{static_cast<unsigned char>(p[k])} << (8 * k);
  return v;
}

Status Decoder::ReadArg(ArgKind kind, Arg* a) {
  auto need = [&](std::size_t k) { return n_ - pos_ >= k; };
  auto fixed = [&](int k) -> bool {
    if (!need(static_cast<std::size_t>(k))) return false;
    a->u = LoadLE(p_ + pos_, k);
    pos_ += static_cast<std::size_t>(k);
    return true;
  };
  auto line = [&](std::string_view* out) -> bool {
    const void* nl = std::memchr(p_ + pos_, '\n', n_ - pos_);
    if (nl == nullptr) return false;
    std::size_t end = static_cast<std::size_t>(static_cast<const char*>(nl) - p_);
    *out = std::string_view(p_ + pos_, end - pos_);
    pos_ = end + 1;
    return true;
  };
  auto payload = [&](std::uint64_t len) -> Status {
    if (len > n_ - pos_) return Err(PickleErrc::kTruncated);
    a->data = std::string_view(p_ + pos_, static_cast<std::size_t>(len));
    pos_ += static_cast<std::size_t>(len);
    return {};
  };
  static const Status trunc = Err(PickleErrc::kTruncated);
  switch (kind) {
    case ArgKind::kNone:
      return {};
    case ArgKind::kU1:
      return fixed(1) ? Status{} : trunc;
    case ArgKind::kU2:
      return fixed(2) ? Status{} : trunc;
    case ArgKind::kU4:
      return fixed(4) ? Status{} : trunc;
    case ArgKind::kI4:
      if (!fixed(4)) return trunc;
      a->i = static_cast<std::int32_t>(static_cast<std::uint32_t>(a->u));
      return {};
    case ArgKind::kU8:
      return fixed(8) ? Status{} : trunc;
    case ArgKind::kF8: {
      if (!need(8)) return trunc;
      std::uint64_t u = 0;
      for (int k = 0; k < 8; ++k) u = (u << 8) | static_cast<unsigned char>(p_[pos_ + k]);
      pos_ += 8;
      a->f = std::bit_cast<double>(u);
      return {};
    }
    case ArgKind::kLine:
      return line(&a->data) ? Status{} : trunc;
    case ArgKind::kTwoLines:
      return line(&a->data) && line(&a->data2) ? Status{} : trunc;
    case ArgKind::kLen1:
      if (!fixed(1)) return trunc;
      return payload(a->u);
    case ArgKind::kLen4:
      if (!fixed(4)) return trunc;
      return payload(a->u);
    case ArgKind::kLenI4:
      if (!fixed(4)) return trunc;
      if (static_cast<std::int32_t>(static_cast<std::uint32_t>(a->u)) < 0)
        return Err(PickleErrc::kMalformed);
      return payload(a->u);
    case ArgKind::kLen8:
      if (!fixed(8)) return trunc;
      return payload(a->u);
  }
  return Err(PickleErrc::kMalformed);
}

// Parses a text integer line (INT/LONG/GET/PUT). Accepts an optional sign and digits, with
// an optional trailing 'L' when allow_l.
Expected<std::string> ParseDecimalLine(std::string_view t, bool allow_l) {
  if (allow_l && !t.empty() && t.back() == 'L') t.remove_suffix(1);
  return DecimalToTwos(t);
}

Expected<std::uint64_t> ParseIndex(std::string_view t) {
  std::uint64_t v = 0;
  auto r = std::from_chars(t.data(), t.data() + t.size(), v);
  if (r.ec != std::errc() || r.ptr != t.data() + t.size() || t.empty())
    return PickleErrc::kMalformed;
  return v;
}

// ---- handlers: one per opcode (or per opcode family) ----

namespace op {

using K = Value::Kind;
using D = Decoder;

Status Proto(D&, const Arg& a) { return a.u <= 5 ? Status{} : D::Err(PickleErrc::kBadProtocol); }
Status Frame(D&, const Arg&) { return {}; }  // length checked by the dispatcher
Status Stop(D& d, const Arg&) {
  if (!d.CanPop()) return D::Err(PickleErrc::kMalformed);
  d.stopped_ = true;
  return {};
}
Status Mark(D& d, const Arg&) {
  d.marks_.push_back(d.stack_.size());
  return {};
}
Status Pop(D& d, const Arg&) {
  if (d.CanPop()) {
    d.Pop();
    return {};
  }
  return d.PopMark(&d.scratch_);  // CPython: POP on an empty (marked) stack pops the mark
}
Status PopMark(D& d, const Arg&) { return d.PopMark(&d.scratch_); }
Status Dup(D& d, const Arg&) {
  if (!d.CanPop()) return D::Err(PickleErrc::kMalformed);
  d.stack_.push_back(d.stack_.back());
  return {};
}

Status None(D& d, const Arg&) { return d.Push(K::kNone); }
Status BoolOp(D& d, bool b) {
  Node* n;
  if (auto s = d.Push(K::kBool, &n)) return s;
  n->scalar.b = b;
  return {};
}
Status NewTrue(D& d, const Arg&) { return BoolOp(d, true); }
Status NewFalse(D& d, const Arg&) { return BoolOp(d, false); }

// Pushes a node whose payload is text produced while decoding (kept by Decoder::Own).
Status PushOwned(D& d, K kind, std::string text, bool big_int = false) {
  auto view = d.Own(std::move(text));
  if (!view) return view.error();
  Node* n;
  if (auto s = d.Push(kind, &n)) return s;
  n->view = *view;
  n->owned = big_int;
  return {};
}
Status PushInt64(D& d, std::int64_t v) {
  Node* n;
  if (auto s = d.Push(K::kInt, &n)) return s;
  n->scalar.i = v;
  return {};
}
// Two's-complement bytes; `in_input`: `twos` points into the pickle (LONG1/LONG4) and can
// be referenced as is (Materialize minimizes it).
Status PushIntBytes(D& d, std::string_view twos, bool in_input) {
  Value tmp = Value::IntFromBytes(twos);
  if (tmp.fits_int64()) return PushInt64(d, tmp.as_int());
  if (!in_input) return PushOwned(d, K::kInt, tmp.int_bytes(), true);
  Node* n;
  if (auto s = d.Push(K::kInt, &n)) return s;
  n->view = twos;
  n->owned = true;
  return {};
}
Status BinInt(D& d, const Arg& a) { return PushInt64(d, a.i); }
Status BinIntU(D& d, const Arg& a) { return PushInt64(d, static_cast<std::int64_t>(a.u)); }
Status Long1(D& d, const Arg& a) { return PushIntBytes(d, a.data, true); }
Status Long4(D& d, const Arg& a) { return PushIntBytes(d, a.data, true); }
Status IntText(D& d, const Arg& a) {
  if (a.data == "01") return BoolOp(d, true);  // protocol 0/1 bools
  if (a.data == "00") return BoolOp(d, false);
  auto b = ParseDecimalLine(a.data, false);
  if (!b) return b.error();
  return PushIntBytes(d, *b, false);
}
Status LongText(D& d, const Arg& a) {
  auto b = ParseDecimalLine(a.data, true);
  if (!b) return b.error();
  return PushIntBytes(d, *b, false);
}
Status PushFloat(D& d, double f) {
  Node* n;
  if (auto s = d.Push(K::kFloat, &n)) return s;
  n->scalar.f = f;
  return {};
}
Status BinFloat(D& d, const Arg& a) { return PushFloat(d, a.f); }
Status FloatText(D& d, const Arg& a) {
  double f = 0;
  std::string_view t = a.data;
  if (!t.empty() && t[0] == '+') t.remove_prefix(1);
  auto r = std::from_chars(t.data(), t.data() + t.size(), f);
  if (r.ec != std::errc() || r.ptr != t.data() + t.size() || t.empty())
    return D::Err(PickleErrc::kMalformed);
  return PushFloat(d, f);
}

Status PushText(D& d, K kind, std::string_view view) {
  Node* n;
  if (auto s = d.Push(kind, &n)) return s;
  n->view = view;
  return {};
}
Status BinUnicode(D& d, const Arg& a) {
  if (!ValidUtf8(a.data)) return D::Err(PickleErrc::kInvalidUtf8);
  return PushText(d, K::kStr, a.data);
}
// UNICODE: raw-unicode-escape text (latin-1 plus \uXXXX / \UXXXXXXXX after an odd run of
// backslashes), as CPython's decoder.
Status UnicodeText(D& d, const Arg& a) {
  std::string out;
  std::string_view s = a.data;
  std::size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '\\') {
      AppendUtf8(&out, static_cast<unsigned char>(s[i++]));
      continue;
    }
    std::size_t run = 0;
    while (i < s.size() && s[i] == '\\') {
      out.push_back('\\');
      ++i;
      ++run;
    }
    if ((run & 1) == 0 || i >= s.size() || (s[i] != 'u' && s[i] != 'U')) continue;
    out.pop_back();
    int count = s[i] == 'u' ? 4 : 8;
    ++i;
    std::uint32_t cp = 0;
    for (int k = 0; k < count; ++k, ++i) {
      if (i >= s.size()) return D::Err(PickleErrc::kInvalidUtf8);
      char c = s[i];
      std::uint32_t h;
      if (c >= '0' && c <= '9') {
        h = static_cast<std::uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        h = static_cast<std::uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        h = static_cast<std::uint32_t>(c - 'A' + 10);
      } else {
        return D::Err(PickleErrc::kInvalidUtf8);
      }
      cp = (cp << 4) | h;
    }
    if (cp > 0x10ffff) return D::Err(PickleErrc::kInvalidUtf8);
    AppendUtf8(&out, cp);
  }
  return PushOwned(d, K::kStr, std::move(out));
}
Status BinBytes(D& d, const Arg& a) { return PushText(d, K::kBytes, a.data); }
Status ByteArray8(D& d, const Arg& a) { return PushText(d, K::kByteArray, a.data); }

Status EmptyList(D& d, const Arg&) { return d.Push(K::kList); }
Status EmptyDict(D& d, const Arg&) { return d.Push(K::kDict); }
Status EmptySet(D& d, const Arg&) { return d.Push(K::kSet); }
Status EmptyTuple(D& d, const Arg&) { return d.Push(K::kTuple); }

// Pushes a new container of `kind` holding `items` (validated for sets/dicts by callers).
Status PushContainer(D& d, K kind, std::vector<std::uint32_t> items) {
  bool hashable = true;
  if (kind == K::kTuple || kind == K::kFrozenSet) {
    for (auto k : items) hashable = hashable && d.At(k).hashable;
  }
  Node* n;
  if (auto s = d.Push(kind, &n)) return s;
  n->kids = std::move(items);
  if (kind == K::kTuple || kind == K::kFrozenSet) n->hashable = hashable;
  return {};
}
Status TupleN(D& d, std::size_t count) {
  if (!d.CanPop(count)) return D::Err(PickleErrc::kMalformed);
  std::vector<std::uint32_t> items(d.stack_.end() - static_cast<std::ptrdiff_t>(count),
                                   d.stack_.end());
  d.stack_.resize(d.stack_.size() - count);
  return PushContainer(d, K::kTuple, std::move(items));
}
Status Tuple1(D& d, const Arg&) { return TupleN(d, 1); }
Status Tuple2(D& d, const Arg&) { return TupleN(d, 2); }
Status Tuple3(D& d, const Arg&) { return TupleN(d, 3); }
Status Tuple(D& d, const Arg&) {
  std::vector<std::uint32_t> items;
  if (auto s = d.PopMark(&items)) return s;
  return PushContainer(d, K::kTuple, std::move(items));
}
Status List(D& d, const Arg&) {
  std::vector<std::uint32_t> items;
  if (auto s = d.PopMark(&items)) return s;
  return PushContainer(d, K::kList, std::move(items));
}
Status CheckAllHashable(D& d, const std::vector<std::uint32_t>& items, std::size_t step) {
  for (std::size_t k = 0; k < items.size(); k += step)
    if (auto s = d.CheckHashable(items[k])) return s;
  return {};
}
Status FrozenSet(D& d, const Arg&) {
  std::vector<std::uint32_t> items;
  if (auto s = d.PopMark(&items)) return s;
  if (auto s = CheckAllHashable(d, items, 1)) return s;
  return PushContainer(d, K::kFrozenSet, std::move(items));
}
Status Dict(D& d, const Arg&) {
  std::vector<std::uint32_t> items;
  if (auto s = d.PopMark(&items)) return s;
  if (items.size() % 2) return D::Err(PickleErrc::kMalformed);
  if (auto s = CheckAllHashable(d, items, 2)) return s;
  return PushContainer(d, K::kDict, std::move(items));
}
// APPEND / SETITEM / ADDITEMS... target: the node below the popped items.
Status Append(D& d, const Arg&) {
  if (!d.CanPop(2)) return D::Err(PickleErrc::kMalformed);
  auto v = d.Pop();
  auto target = d.stack_.back();
  if (!d.IsValueKind(target, K::kList)) return D::Err(PickleErrc::kMalformed);
  d.At(target).kids.push_back(v);
  return {};
}
Status SetItem(D& d, const Arg&) {
  if (!d.CanPop(3)) return D::Err(PickleErrc::kMalformed);
  auto v = d.Pop();
  auto k = d.Pop();
  auto target = d.stack_.back();
  if (!d.IsValueKind(target, K::kDict)) return D::Err(PickleErrc::kMalformed);
  if (auto s = d.CheckHashable(k)) return s;
  auto& kids = d.At(target).kids;
  kids.push_back(k);
  kids.push_back(v);
  return {};
}
// APPENDS / SETITEMS / ADDITEMS: items since the mark go into the node just below it.
Status Extend(D& d, K want, std::size_t step) {
  if (d.marks_.empty()) return D::Err(PickleErrc::kMalformed);
  std::size_t m = d.marks_.back();
  if (m == 0 || m <= (d.marks_.size() >= 2 ? d.marks_[d.marks_.size() - 2] : 0))
    return D::Err(PickleErrc::kMalformed);  // no target inside the enclosing frame
  auto target = d.stack_[m - 1];
  if (!d.IsValueKind(target, want)) return D::Err(PickleErrc::kMalformed);
  if (auto s = d.PopMark(&d.scratch_)) return s;
  if (d.scratch_.size() % step) return D::Err(PickleErrc::kMalformed);
  if (want != K::kList) {
    if (auto s = CheckAllHashable(d, d.scratch_, step)) return s;
  }
  auto& kids = d.At(target).kids;
  kids.insert(kids.end(), d.scratch_.begin(), d.scratch_.end());
  return {};
}
Status Appends(D& d, const Arg&) { return Extend(d, K::kList, 1); }
Status SetItems(D& d, const Arg&) { return Extend(d, K::kDict, 2); }
Status AddItems(D& d, const Arg&) { return Extend(d, K::kSet, 1); }

Status Put(D& d, const Arg& a) {
  auto idx = ParseIndex(a.data);
  if (!idx) return idx.error();
  return d.MemoPut(*idx);
}
Status BinPut(D& d, const Arg& a) { return d.MemoPut(a.u); }
Status Memoize(D& d, const Arg&) { return d.MemoPut(d.memo_count_); }
Status Get(D& d, const Arg& a) {
  auto idx = ParseIndex(a.data);
  if (!idx) return idx.error();
  return d.MemoGet(*idx);
}
Status BinGet(D& d, const Arg& a) { return d.MemoGet(a.u); }

// GLOBAL / STACK_GLOBAL: only the fixed names CPython uses for the subset's own types at
// protocols 2..4 are recognised (as data). Nothing is imported, looked up or called.
Status PushCallable(D& d, std::string_view module, std::string_view name) {
  const bool builtins = module == "builtins" || module == "__builtin__";
  Callable c;
  if (builtins && name == "set") {
    c = Callable::kSet;
  } else if (builtins && name == "frozenset") {
    c = Callable::kFrozenSet;
  } else if (builtins && name == "bytearray") {
    c = Callable::kByteArray;
  } else if (builtins && name == "bytes") {
    c = Callable::kBytes;
  } else if (module == "_codecs" && name == "encode") {
    c = Callable::kCodecsEncode;
  } else {
    return D::Err(PickleErrc::kUnsupported);
  }
  Node* n;
  if (auto s = d.Push(K::kNone, &n)) return s;
  n->node_kind = NodeKind::kCallable;
  n->callable = c;
  return {};
}
Status Global(D& d, const Arg& a) { return PushCallable(d, a.data, a.data2); }
Status StackGlobal(D& d, const Arg&) {
  if (!d.CanPop(2)) return D::Err(PickleErrc::kMalformed);
  auto name = d.Pop();
  auto module = d.Pop();
  if (!d.IsValueKind(name, K::kStr) || !d.IsValueKind(module, K::kStr))
    return D::Err(PickleErrc::kMalformed);
  return PushCallable(d, d.At(module).text(), d.At(name).text());
}

bool IsLatin1Name(std::string_view s) { return s == "latin1" || s == "latin-1"; }

// REDUCE of a recognised callable with the argument shapes CPython produces.
Status Reduce(D& d, const Arg&) {
  if (!d.CanPop(2)) return D::Err(PickleErrc::kMalformed);
  auto args_id = d.Pop();
  auto fn_id = d.Pop();
  if (d.At(fn_id).node_kind != NodeKind::kCallable) return D::Err(PickleErrc::kUnsupported);
  if (!d.IsValueKind(args_id, K::kTuple)) return D::Err(PickleErrc::kUnsupported);
  const Callable c = d.At(fn_id).callable;
  const std::vector<std::uint32_t> args = d.At(args_id).kids;  // copy: arena may grow
  auto arg_is = [&](std::size_t i, K k) { return d.IsValueKind(args[i], k); };
  // Latin-1 text (a str whose code points are < 256) -> bytes.
  auto latin1 = [&](std::uint32_t str_id, std::string* out) -> bool {
    return Utf8ToLatin1(d.At(str_id).text(), out);
  };
  switch (c) {
    case Callable::kSet:
    case Callable::kFrozenSet: {
      const K kind = c == Callable::kSet ? K::kSet : K::kFrozenSet;
      if (args.empty()) return PushContainer(d, kind, {});
      if (args.size() != 1) return D::Err(PickleErrc::kUnsupported);
      if (!arg_is(0, K::kList) && !arg_is(0, K::kTuple) && !arg_is(0, K::kSet) &&
          !arg_is(0, K::kFrozenSet))
        return D::Err(PickleErrc::kUnsupported);
      if (auto s = d.CountCopies(d.At(args[0]).kids.size())) return s;
      std::vector<std::uint32_t> items = d.At(args[0]).kids;
      if (auto s = CheckAllHashable(d, items, 1)) return s;
      return PushContainer(d, kind, std::move(items));
    }
    case Callable::kBytes:
    case Callable::kByteArray: {
      const K kind = c == Callable::kBytes ? K::kBytes : K::kByteArray;
      if (args.empty()) return PushText(d, kind, {});
      if (args.size() == 1 && (arg_is(0, K::kBytes) || arg_is(0, K::kByteArray))) {
        Node* n;
        if (auto s = d.Push(kind, &n)) return s;
        const Node& src = d.At(args[0]);  // re-fetch after Push (arena may move)
        n = &d.At(d.stack_.back());
        n->view = src.view;
        return {};
      }
      if (args.size() == 2 && arg_is(0, K::kStr) && arg_is(1, K::kStr) &&
          IsLatin1Name(d.At(args[1]).text())) {
        std::string out;
        if (!latin1(args[0], &out)) return D::Err(PickleErrc::kUnsupported);
        return PushOwned(d, kind, std::move(out));
      }
      return D::Err(PickleErrc::kUnsupported);
    }
    case Callable::kCodecsEncode: {
      if (args.size() != 2 || !arg_is(0, K::kStr) || !arg_is(1, K::kStr) ||
          !IsLatin1Name(d.At(args[1]).text()))
        return D::Err(PickleErrc::kUnsupported);
      std::string out;
      if (!latin1(args[0], &out)) return D::Err(PickleErrc::kUnsupported);
      return PushOwned(d, K::kBytes, std::move(out));
    }
  }
  return D::Err(PickleErrc::kUnsupported);
}

}  // namespace op

// The opcode table: byte -> handler and inline-argument kind. Opcodes not listed are
// unknown (kMalformed); `unsupported` ones are valid pickle outside the subset.
constexpr std::array<OpInfo, 256> MakeOpTable() {
  std::array<OpInfo, 256> t{};
  auto set = [&t](char code, Handler h, ArgKind arg) {
    t[static_cast<unsigned char>(code)] = OpInfo{h, arg, false};
  };
  auto unsupported = [&t](char code) {
    t[static_cast<unsigned char>(code)] = OpInfo{nullptr, ArgKind::kNone, true};
  };
  using A = ArgKind;
  // Framing, stack and memo.
  set('\x80', op::Proto, A::kU1);      // PROTO
  set('\x95', op::Frame, A::kU8);      // FRAME
  set('.', op::Stop, A::kNone);        // STOP
  set('(', op::Mark, A::kNone);        // MARK
  set('0', op::Pop, A::kNone);         // POP
  set('1', op::PopMark, A::kNone);     // POP_MARK
  set('2', op::Dup, A::kNone);         // DUP
  set('p', op::Put, A::kLine);         // PUT
  set('q', op::BinPut, A::kU1);        // BINPUT
  set('r', op::BinPut, A::kU4);        // LONG_BINPUT
  set('\x94', op::Memoize, A::kNone);  // MEMOIZE
  set('g', op::Get, A::kLine);         // GET
  set('h', op::BinGet, A::kU1);        // BINGET
  set('j', op::BinGet, A::kU4);        // LONG_BINGET
  // Scalars.
  set('N', op::None, A::kNone);           // NONE
  set('\x88', op::NewTrue, A::kNone);     // NEWTRUE
  set('\x89', op::NewFalse, A::kNone);    // NEWFALSE
  set('I', op::IntText, A::kLine);        // INT
  set('J', op::BinInt, A::kI4);           // BININT
  set('K', op::BinIntU, A::kU1);          // BININT1
  set('M', op::BinIntU, A::kU2);          // BININT2
  set('L', op::LongText, A::kLine);       // LONG
  set('\x8a', op::Long1, A::kLen1);       // LONG1
  set('\x8b', op::Long4, A::kLenI4);      // LONG4
  set('G', op::BinFloat, A::kF8);         // BINFLOAT
  set('F', op::FloatText, A::kLine);      // FLOAT
  set('X', op::BinUnicode, A::kLen4);     // BINUNICODE
  set('\x8c', op::BinUnicode, A::kLen1);  // SHORT_BINUNICODE
  set('\x8d', op::BinUnicode, A::kLen8);  // BINUNICODE8
  set('V', op::UnicodeText, A::kLine);    // UNICODE
  set('B', op::BinBytes, A::kLen4);       // BINBYTES
  set('C', op::BinBytes, A::kLen1);       // SHORT_BINBYTES
  set('\x8e', op::BinBytes, A::kLen8);    // BINBYTES8
  set('T', op::BinBytes, A::kLenI4);      // BINSTRING (Python 2 str -> bytes)
  set('U', op::BinBytes, A::kLen1);       // SHORT_BINSTRING (Python 2 str -> bytes)
  set('\x96', op::ByteArray8, A::kLen8);  // BYTEARRAY8
  // Containers.
  set(']', op::EmptyList, A::kNone);     // EMPTY_LIST
  set('a', op::Append, A::kNone);        // APPEND
  set('e', op::Appends, A::kNone);       // APPENDS
  set('l', op::List, A::kNone);          // LIST
  set(')', op::EmptyTuple, A::kNone);    // EMPTY_TUPLE
  set('t', op::Tuple, A::kNone);         // TUPLE
  set('\x85', op::Tuple1, A::kNone);     // TUPLE1
  set('\x86', op::Tuple2, A::kNone);     // TUPLE2
  set('\x87', op::Tuple3, A::kNone);     // TUPLE3
  set('}', op::EmptyDict, A::kNone);     // EMPTY_DICT
  set('s', op::SetItem, A::kNone);       // SETITEM
  set('u', op::SetItems, A::kNone);      // SETITEMS
  set('d', op::Dict, A::kNone);          // DICT
  set('\x8f', op::EmptySet, A::kNone);   // EMPTY_SET
  set('\x90', op::AddItems, A::kNone);   // ADDITEMS
  set('\x91', op::FrozenSet, A::kNone);  // FROZENSET
  // Recognised-as-data callables (see PushCallable/Reduce).
  set('c', op::Global, A::kTwoLines);      // GLOBAL
  set('\x93', op::StackGlobal, A::kNone);  // STACK_GLOBAL
  set('R', op::Reduce, A::kNone);          // REDUCE
  // Valid pickle, outside the subset: never executed.
  unsupported('P');     // PERSID
  unsupported('Q');     // BINPERSID
  unsupported('b');     // BUILD
  unsupported('i');     // INST
  unsupported('o');     // OBJ
  unsupported('\x81');  // NEWOBJ
  unsupported('\x92');  // NEWOBJ_EX
  unsupported('\x82');  // EXT1
  unsupported('\x83');  // EXT2
  unsupported('\x84');  // EXT4
  unsupported('\x97');  // NEXT_BUFFER
  unsupported('\x98');  // READONLY_BUFFER
  unsupported('S');     // STRING (protocol 0 quoted text)
  return t;
}

constexpr std::array<OpInfo, 256> kOps = MakeOpTable();

Expected<Value> Decoder::Run() {
  while (!stopped_) {
    if (pos_ >= n_) return PickleErrc::kTruncated;
    const auto code = static_cast<unsigned char>(p_[pos_++]);
    const OpInfo& info = kOps[code];
    if (info.unsupported) return PickleErrc::kUnsupported;
    if (info.handler == nullptr) return PickleErrc::kMalformed;
    Arg arg;
    if (auto s = ReadArg(info.arg, &arg)) return MakeUnexpected(s);
    if (code == 0x95 && arg.u > n_ - pos_) return PickleErrc::kTruncated;  // FRAME
    if (auto s = info.handler(*this, arg)) return MakeUnexpected(s);
  }
  const std::uint32_t root = stack_.back();
  on_path_.assign(nodes_.size(), 0);
  Value out;
  if (auto s = Materialize(root, 1, &out)) return MakeUnexpected(s);
  return out;
}

// Arena graph -> Value tree. Recursion depth is bounded by max_depth; a node reached again
// while on the current path is a cycle (a self-containing list/dict/set): kUnsupported.
Status Decoder::Materialize(std::uint32_t id, int depth, Value* out) {
  if (depth > opts_.max_depth) return Err(PickleErrc::kTooDeep);
  if (++values_out_ > opts_.max_values) return Err(PickleErrc::kTooLarge);
  const Node& n = nodes_[id];
  if (n.node_kind == NodeKind::kCallable) return Err(PickleErrc::kUnsupported);
  auto text = [&]() -> Expected<std::string> {
    std::string_view t = n.text();
    if (t.size() > opts_.max_bytes - bytes_out_) return PickleErrc::kTooLarge;
    bytes_out_ += t.size();
    return std::string(t);
  };
  using K = Value::Kind;
  switch (n.kind) {
    case K::kNone:
      *out = Value::None();
      return {};
    case K::kBool:
      *out = Value::Bool(n.scalar.b);
      return {};
    case K::kInt:
      if (!n.owned) {
        *out = Value::Int(n.scalar.i);
        return {};
      }
      [[fallthrough]];
    case K::kStr:
    case K::kBytes:
    case K::kByteArray: {
      auto t = text();
      if (!t) return t.error();
      if (n.kind == K::kInt) {
        *out = Value::IntFromBytes(*t);
      } else if (n.kind == K::kStr) {
        *out = Value::Str(std::move(*t));
      } else if (n.kind == K::kBytes) {
        *out = Value::Bytes(std::move(*t));
      } else {
        *out = Value::ByteArray(std::move(*t));
      }
      return {};
    }
    case K::kFloat:
      *out = Value::Float(n.scalar.f);
      return {};
    case K::kList:
    case K::kTuple:
    case K::kSet:
    case K::kFrozenSet:
    case K::kDict:
      break;
  }
  if (on_path_[id]) return Err(PickleErrc::kUnsupported);  // recursive structure
  on_path_[id] = 1;
  const std::size_t count = nodes_[id].kids.size();
  // Fail before allocating the children if they cannot fit in the budget, so the result's
  // memory stays below max_values * sizeof(Value) + max_bytes.
  if (count > opts_.max_values - values_out_) return Err(PickleErrc::kTooLarge);
  std::vector<Value> items(n.kind == K::kDict ? 0 : count);
  std::vector<Value::Entry> entries(n.kind == K::kDict ? count / 2 : 0);
  for (std::size_t k = 0; k < count; ++k) {
    const std::uint32_t kid = nodes_[id].kids[k];
    Value* slot =
        n.kind == K::kDict ? (k % 2 ? &entries[k / 2].second : &entries[k / 2].first) : &items[k];
    if (auto s = Materialize(kid, depth + 1, slot)) return s;
  }
  on_path_[id] = 0;
  switch (n.kind) {
    case K::kList:
      *out = Value::List(std::move(items));
      break;
    case K::kTuple:
      *out = Value::Tuple(std::move(items));
      break;
    case K::kSet:
      *out = Value::Set(std::move(items));
      break;
    case K::kFrozenSet:
      *out = Value::FrozenSet(std::move(items));
      break;
    default:
      *out = Value::Dict(std::move(entries));
      break;
  }
  return {};
}

}  // namespace

Expected<Value> Decode(std::span<const std::byte> data, const DecodeOptions& options) {
  Decoder d(data, options);
  return d.Run();
}

Expected<Value> Decode(std::span<const std::byte> data) {
  static const DecodeOptions kDefaults;
  return Decode(data, kDefaults);
}

}  // namespace shmlink::pickle
