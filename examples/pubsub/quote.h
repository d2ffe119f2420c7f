// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// feed::Quote: the fixed-size message of the pubsub example's topic. Python reads it with
// the structured dtype in quote_summary.py (same fields, same offsets, 48 bytes).
#ifndef SHMLINK_EXAMPLES_PUBSUB_QUOTE_H_
#define SHMLINK_EXAMPLES_PUBSUB_QUOTE_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include <shmlink/topic_type.h>

namespace feed {

struct Quote {
  uint64_t seq;   // 0, 1, 2, ... per publisher run
  int64_t ts_ns;  // CLOCK_REALTIME at publication
  double bid;
  double ask;
  uint32_t bid_size;
  uint32_t ask_size;
  char symbol[8];  // NUL-padded
};
static_assert(sizeof(Quote) == 48 && offsetof(Quote, bid) == 16 && offsetof(Quote, symbol) == 40);

}  // namespace feed

// A stable name for the type check, whatever the compiler spells: Python attaches with
// type_name="feed::Quote".
template <>
struct shmlink::TopicTypeName<feed::Quote> {
  static constexpr std::string_view value = "feed::Quote";
};

#endif  // SHMLINK_EXAMPLES_PUBSUB_QUOTE_H_
