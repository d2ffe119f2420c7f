// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// A producer killed inside commit() must not brick the ring. Deterministic kill points
// (tests/kill_on_write.h: a hardware watchpoint SIGKILLs the traced producer right after a
// chosen word is written):
//  * right after the batch's first header word (the commit word) is stored, before
//    write_pos: the consumer may read and release the whole batch, so read_pos passes
//    write_pos. The successor producer must resume at the true end of the stream;
//  * right after write_pos is stored (before the wake-up).
// In every case the consumer gets every message - before the kill, the killed batch (its
// header was published: it is committed), and the successor's - in order, exactly once.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "tests/kill_on_write.h"
#include "tests/test_util.h"

#include <shmlink/spsc_layout.h>
#include <shmlink/spsc_ring.h>

namespace shmlink {
namespace {

using std::chrono::milliseconds;
using testing::Bytes;
using testing::RunTraced;
using testing::Str;
using testing::TracedOutcome;
using testing::UniqueShmName;

enum class KillAt { kHeaderWord, kWritePos };

struct Scenario {
  const char* name;
  KillAt at;
  int before;        // messages sent and drained before the traced producer runs
  int batch;         // records of the killed commit (one commit)
  bool drain_first;  // the consumer drains the killed batch before the successor claims
  size_t size = 48;  // payload bytes per message (56-byte records: batches wrap)
};

void PrintTo(const Scenario& s, std::ostream* os) { *os << s.name; }

std::string Msg(const char* tag, int i) {
  std::string s = std::string(tag) + std::to_string(i);
  s.resize(48, '.');
  return s;
}

class KillInCommit : public ::testing::TestWithParam<Scenario> {};

TEST_P(KillInCommit, SuccessorResumesAndNothingIsLostOrRepeated) {
  const Scenario sc = GetParam();
  auto ring = SpscRing::Create(UniqueShmName("killcommit"), 1024);
  ASSERT_TRUE(ring) << ring.error().message();
  auto g = ValidateSpscSegment(ring->segment(), SegmentKind::kSpscRing, 1);
  ASSERT_TRUE(g);
  const SpscRegion region = SpscRegionAt(ring->segment(), *g, 0);
  SpscControl* ctl = region.control;
  auto rx = ring->Consumer();
  ASSERT_TRUE(rx);
  std::vector<std::string> expected;
  auto drain = [&] {
    for (;;) {
      auto m = rx->try_peek();
      if (!m) {
        EXPECT_EQ(m.error(), RingErrc::kWouldBlock) << m.error().message();
        return;
      }
      ASSERT_FALSE(expected.empty()) << "unexpected message " << Str(*m);
      EXPECT_EQ(Str(*m), expected.front());
      expected.erase(expected.begin());
      rx->release();
    }
  };
  {
    auto tx = ring->Producer();
    ASSERT_TRUE(tx);
    for (int i = 0; i < sc.before; ++i) {
      ASSERT_TRUE(tx->try_send(Bytes(Msg("pre", i))));
      expected.push_back(Msg("pre", i));
      drain();
    }
  }
  ASSERT_TRUE(expected.empty());
  const uint64_t w = ctl->write_pos.load();
  const void* watch = sc.at == KillAt::kHeaderWord
                          ? static_cast<const void*>(region.data + (w & 1023))
                          : static_cast<const void*>(&ctl->write_pos);
  const TracedOutcome out = RunTraced(
      [&]() -> int {
        auto tx = ring->Producer();
        if (!tx) return 2;
        if (!testing::KillOnWrite(watch)) return 3;
        for (int i = 0; i < sc.batch; ++i) {
          auto b = tx->try_reserve(sc.size);
          if (!b) return 4;
          const std::string m = Msg("batch", i);
          std::memcpy(b->data(), m.data(), m.size());
        }
        tx->commit();  // killed in here
        return 5;
      },
      milliseconds(20000));
  if (out.kind == TracedOutcome::kExited && out.code == 3) GTEST_SKIP() << "no watchpoints here";
  ASSERT_EQ(out.kind, TracedOutcome::kKilledAtPoint)
      << testing::TracedOutcomeName(out.kind) << " code " << out.code;
  for (int i = 0; i < sc.batch; ++i) expected.push_back(Msg("batch", i));
  if (sc.at == KillAt::kHeaderWord) {
    EXPECT_EQ(ctl->write_pos.load(), w) << "killed after write_pos, not between";
  } else {
    EXPECT_GT(ctl->write_pos.load(), w);
  }
  if (sc.drain_first) {
    drain();
    ASSERT_TRUE(expected.empty()) << "the killed batch was published: it is committed";
    if (sc.at == KillAt::kHeaderWord) {
      EXPECT_GT(ctl->read_pos.load(), ctl->write_pos.load());  // the state that bricked it
    }
  }
  auto tx = ring->Producer();
  ASSERT_TRUE(tx) << tx.error().message();
  for (int i = 0; i < 40; ++i) {
    auto r = tx->try_send(Bytes(Msg("after", i)));
    ASSERT_TRUE(r) << i << ": " << r.error().message();
    expected.push_back(Msg("after", i));
    drain();
  }
  EXPECT_TRUE(expected.empty()) << expected.size() << " messages missing";
  EXPECT_EQ(ctl->write_pos.load(), ctl->read_pos.load());
  EXPECT_EQ(ctl->producer_stats.takeovers.load(), 1u);
}

INSTANTIATE_TEST_SUITE_P(
    Spsc, KillInCommit,
    ::testing::Values(Scenario{"HeaderSingleDrainFirst", KillAt::kHeaderWord, 3, 1, true},
                      Scenario{"HeaderBatchWrapsDrainFirst", KillAt::kHeaderWord, 12, 10, true},
                      Scenario{"HeaderBatchSuccessorFirst", KillAt::kHeaderWord, 12, 10, false},
                      Scenario{"WritePosBatchDrainFirst", KillAt::kWritePos, 12, 10, true},
                      Scenario{"WritePosSingleSuccessorFirst", KillAt::kWritePos, 0, 1, false}),
    [](const ::testing::TestParamInfo<Scenario>& p) { return std::string(p.param.name); });

}  // namespace
}  // namespace shmlink
