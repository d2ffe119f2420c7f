// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Conversions shared by the pickle value model, decoder and encoder (internal: not part
// of the installed API): Python ints as two's-complement little-endian byte strings and as
// decimal text, and UTF-8 with CPython's 'surrogatepass' (encoded lone surrogates allowed).
#ifndef SHMLINK_TRANSPORT_PICKLE_CONVERSIONS_H_
#define SHMLINK_TRANSPORT_PICKLE_CONVERSIONS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

#include <shmlink/expected.h>

namespace shmlink::pickle::internal {

// Empty = success; otherwise a PickleErrc.
using Status = std::error_code;

// Two's-complement little-endian integers.
void MinimizeTwos(std::string* b);  // strips redundant sign bytes
std::string Int64ToTwos(std::int64_t v);
void NegateTwos(std::string* b);
std::string TwosToDecimal(std::string b);
Expected<std::string> DecimalToTwos(std::string_view t);  // kBadValue on malformed text

// UTF-8 (surrogatepass) and Latin-1.
bool ValidUtf8(std::string_view s);
void AppendUtf8(std::string* out, std::uint32_t cp);
bool Utf8ToLatin1(std::string_view s, std::string* out);  // false if not representable
void Latin1ToUtf8(std::string_view s, std::string* out);

}  // namespace shmlink::pickle::internal

#endif  // SHMLINK_TRANSPORT_PICKLE_CONVERSIONS_H_
