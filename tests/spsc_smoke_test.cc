// Quick end-to-end check of the SPSC ring (the full suite is spsc_ring_test.cc).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "ringbuf/spsc_ring.h"
#include "tests/test_util.h"

namespace shmlink {
namespace {

TEST(SpscSmoke, CrossProcessOrderedDelivery) {
  const std::string name = testing::UniqueShmName("smoke");
  auto ring = SpscRing::Create(name, 1 << 16);
  ASSERT_TRUE(ring) << ring.error().message();
  constexpr uint64_t kCount = 200000;
  pid_t child = testing::ForkChild([&] {
    auto r = SpscRing::Attach(name);
    if (!r) return 2;
    auto rx = r->Consumer();
    if (!rx) return 3;
    for (uint64_t i = 0; i < kCount; ++i) {
      auto m = rx->peek();
      if (!m) return 4;
      uint64_t v;
      if (m->size() != 8 + (i % 50)) return 5;
      std::memcpy(&v, m->data(), 8);
      if (v != i) return 6;
      rx->release();
    }
    auto end = rx->peek();
    return end.error() == RingErrc::kClosed ? 0 : 7;
  });
  auto tx = ring->Producer();
  ASSERT_TRUE(tx);
  for (uint64_t i = 0; i < kCount; ++i) {
    auto buf = tx->reserve(8 + (i % 50));
    ASSERT_TRUE(buf) << buf.error().message();
    std::memcpy(buf->data(), &i, 8);
    tx->commit();
  }
  tx->close();
  EXPECT_EQ(testing::WaitChild(child), 0);
}

}  // namespace
}  // namespace shmlink
