// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// CI run of the crash-injection stress (crash_scenario.h): >= 100 trials in plain builds,
// fewer under sanitizers (each trial forks and maps segments; ASan makes that slower).
#include <gtest/gtest.h>

#include <cstdio>

#include "tests/reliability/crash_scenario.h"

namespace shmlink::reliability {
namespace {

constexpr uint64_t kTrials = testing::kSanitized ? 100 : 300;

TEST(CrashStress, NoLossNoDuplicateNoHangNoLeak) {
  StressOptions opts;
  opts.trials = kTrials;
  double seconds = 0;
  const TrialCounts total = RunStress(opts, &seconds);
  std::printf("%s\n", total.Json(seconds).c_str());
  EXPECT_EQ(total.trials, kTrials);
  EXPECT_EQ(total.lost, 0u);
  EXPECT_EQ(total.duplicated, 0u);
  EXPECT_EQ(total.hangs, 0u);
  EXPECT_EQ(total.leaked, 0u);
  EXPECT_EQ(total.misordered, 0u);
  EXPECT_EQ(total.corrupt, 0u);
  EXPECT_EQ(total.errors, 0u);
  // The harness must really kill: most trials plan a kill, and kills that land are
  // counted only when the victim died of SIGKILL.
  EXPECT_GT(total.kills, kTrials / 4);
  EXPECT_GT(total.messages, 0u);
}

}  // namespace
}  // namespace shmlink::reliability
