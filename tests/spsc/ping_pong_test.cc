// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// examples/ping_pong end to end: the two programs are exec'd separately, meet by shm name
// whichever starts first, both exit 0, and nothing is left in /dev/shm.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"

namespace shmlink {
namespace {

using testing::Runfile;
using testing::ShmExists;
using testing::SpawnProgram;

void RunPair(bool pong_first, const std::string& size) {
  const std::string name = testing::UniqueShmName("pingpong");
  const std::vector<std::string> args = {"--name", name, "--count", "2000", "--size", size};
  const std::string ping = Runfile("examples/ping_pong/ping");
  const std::string pong = Runfile("examples/ping_pong/pong");
  pid_t first = SpawnProgram(pong_first ? pong : ping, args);
  ASSERT_GT(first, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  pid_t second = SpawnProgram(pong_first ? ping : pong, args);
  ASSERT_GT(second, 0);
  EXPECT_EQ(testing::WaitChildFor(first, std::chrono::milliseconds(60000)), 0);
  EXPECT_EQ(testing::WaitChildFor(second, std::chrono::milliseconds(60000)), 0);
  EXPECT_FALSE(ShmExists(name + ".ping"));
  EXPECT_FALSE(ShmExists(name + ".pong"));
}

TEST(PingPongExample, PongStartsFirst) { RunPair(true, "64"); }
TEST(PingPongExample, PingStartsFirst) { RunPair(false, "4096"); }

TEST(PingPongExample, PingAloneGivesUpAndCleansUp) {
  const std::string name = testing::UniqueShmName("pingalone");
  pid_t ping = SpawnProgram(Runfile("examples/ping_pong/ping"),
                            {"--name", name, "--count", "10", "--timeout", "0.3"});
  ASSERT_GT(ping, 0);
  EXPECT_EQ(testing::WaitChildFor(ping, std::chrono::milliseconds(30000)), 1);
  EXPECT_FALSE(ShmExists(name + ".ping"));
  EXPECT_FALSE(ShmExists(name + ".pong"));
}

}  // namespace
}  // namespace shmlink
