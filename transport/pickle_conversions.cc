// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Two's-complement integers and UTF-8/Latin-1 for the pickle codec.
#include "transport/pickle_conversions.h"

#include <algorithm>
#include <cstring>

#include <shmlink/pickle.h>

namespace shmlink::pickle::internal {

// Strips redundant sign bytes.
void MinimizeTwos(std::string* b) {
  while (!b->empty()) {
    const auto last = static_cast<unsigned char>(b->back());
    if (b->size() == 1) {
      if (last == 0) b->pop_back();
      break;
    }
    const auto prev = static_cast<unsigned char>((*b)[b->size() - 2]);
    if ((last == 0x00 && !(prev & 0x80)) || (last == 0xff && (prev & 0x80))) {
      b->pop_back();
    } else {
      break;
    }
  }
}

std::string Int64ToTwos(std::int64_t v) {
  std::string b(8, '\0');
  auto u = static_cast<std::uint64_t>(v);
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((u >> (8 * i)) & 0xff);
  MinimizeTwos(&b);
  return b;
}

void NegateTwos(std::string* b) {
  unsigned carry = 1;
  for (char& c : *b) {
    unsigned x = static_cast<unsigned char>(~static_cast<unsigned char>(c)) + carry;
    c = static_cast<char>(x & 0xff);
    carry = x >> 8;
  }
}

std::string TwosToDecimal(std::string b) {
  if (b.empty()) return "0";
  bool neg = static_cast<unsigned char>(b.back()) & 0x80;
  if (neg) {
    b.push_back(static_cast<char>(0xff));
    NegateTwos(&b);
  }
  // Magnitude as little-endian 32-bit limbs.
  std::vector<std::uint32_t> limbs((b.size() + 3) / 4, 0);
  for (std::size_t i = 0; i < b.size(); ++i)
    limbs[i / 4] |= std::uint32_t{static_cast<unsigned char>(b[i])} << (8 * (i % 4));
  while (!limbs.empty() && limbs.back() == 0) limbs.pop_back();
  std::string digits;
  while (!limbs.empty()) {
    std::uint64_t rem = 0;
    for (std::size_t i = limbs.size(); i-- > 0;) {
      std::uint64_t cur = (rem << 32) | limbs[i];
      limbs[i] = static_cast<std::uint32_t>(cur / 1000000000u);
      rem = cur % 1000000000u;
    }
    while (!limbs.empty() && limbs.back() == 0) limbs.pop_back();
    for (int k = 0; k < 9; ++k) {
      digits.push_back(static_cast<char>('0' + rem % 10));
      rem /= 10;
      if (limbs.empty() && rem == 0) break;
    }
  }
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  if (neg) digits.push_back('-');
  std::reverse(digits.begin(), digits.end());
  return digits;
}

constexpr std::size_t kMaxIntDigits = 4300;  // CPython's default int_max_str_digits

// Decimal text -> two's complement. Accepts [+-]?[0-9]+ (underscores not accepted).
Expected<std::string> DecimalToTwos(std::string_view t) {
  bool neg = false;
  if (!t.empty() && (t[0] == '-' || t[0] == '+')) {
    neg = t[0] == '-';
    t.remove_prefix(1);
  }
  if (t.empty()) return PickleErrc::kMalformed;
  if (t.size() > kMaxIntDigits) return PickleErrc::kTooLarge;
  std::vector<std::uint32_t> limbs;  // little-endian magnitude
  for (char c : t) {
    if (c < '0' || c > '9') return PickleErrc::kMalformed;
  }
  std::size_t pos = 0;
  while (pos < t.size()) {
    std::size_t n = std::min<std::size_t>(9, t.size() - pos);
    std::uint32_t chunk = 0, mul = 1;
    for (std::size_t k = 0; k < n; ++k) {
      chunk = chunk * 10 + static_cast<std::uint32_t>(t[pos + k] - '0');
      mul *= 10;
    }
    pos += n;
    std::uint64_t carry = chunk;
    for (auto& l : limbs) {
      std::uint64_t cur = std::uint64_t{l} * mul + carry;
      l = static_cast<std::uint32_t>(cur);
      carry = cur >> 32;
    }
    if (carry) limbs.push_back(static_cast<std::uint32_t>(carry));
  }
  std::string b;
  b.reserve(limbs.size() * 4 + 1);
  for (auto l : limbs)
    for (int k = 0; k < 4; ++k) b.push_back(static_cast<char>((l >> (8 * k)) & 0xff));
  b.push_back('\0');  // sign byte for the magnitude
  if (neg) NegateTwos(&b);
  MinimizeTwos(&b);
  return b;
}

// UTF-8 (with CPython's 'surrogatepass': encoded lone surrogates are allowed).

bool ValidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) return false;
    i += len;
  }
  return true;
}

void AppendUtf8(std::string* out, std::uint32_t cp) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out->push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

// Valid UTF-8 -> latin-1 bytes; false if a code point is > 0xff.
bool Utf8ToLatin1(std::string_view s, std::string* out) {
  out->clear();
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (std::size_t i = 0; i < s.size();) {
    unsigned c = p[i];
    if (c < 0x80) {
      out->push_back(static_cast<char>(c));
      ++i;
    } else if ((c == 0xc2 || c == 0xc3) && i + 1 < s.size()) {
      out->push_back(static_cast<char>(((c & 0x1f) << 6) | (p[i + 1] & 0x3f)));
      i += 2;
    } else {
      return false;
    }
  }
  return true;
}

void Latin1ToUtf8(std::string_view s, std::string* out) {
  out->clear();
  out->reserve(s.size() * 2);
  for (char c : s) AppendUtf8(out, static_cast<unsigned char>(c));
}

}  // namespace shmlink::pickle::internal
