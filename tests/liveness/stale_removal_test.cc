// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Stale-segment removal decides on one file and unlinks that same file: a segment that a
// racing process re-created under the name in between is never removed.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/test_util.h"

#include <shmlink/segment.h>
#include <shmlink/spsc_ring.h>

namespace shmlink {
namespace {

ino_t InodeOfName(const std::string& name) {
  struct stat st {};
  if (::stat(("/dev/shm" + name).c_str(), &st) != 0) return 0;
  return st.st_ino;
}

ino_t InodeOfFd(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return 0;
  return st.st_ino;
}

TEST(StaleRemoval, UnlinkIfSameLeavesARecreatedNameAlone) {
  const std::string name = testing::UniqueShmName("stale-same");
  auto old_seg = Segment::Create(name, 4096, UnlinkPolicy::kKeep);
  ASSERT_TRUE(old_seg) << old_seg.error().message();
  ASSERT_EQ(::shm_unlink(name.c_str()), 0);  // somebody removed it ...
  auto new_seg = Segment::Create(name, 4096, UnlinkPolicy::kUnlinkOnDestroy);  // ... and re-made it
  ASSERT_TRUE(new_seg) << new_seg.error().message();
  auto removed = UnlinkShmIfSame(name, old_seg->fd());  // a cleaner that judged the old file
  ASSERT_TRUE(removed) << removed.error().message();
  EXPECT_FALSE(*removed);
  EXPECT_EQ(InodeOfName(name), InodeOfFd(new_seg->fd()));
  removed = UnlinkShmIfSame(name, new_seg->fd());
  ASSERT_TRUE(removed);
  EXPECT_TRUE(*removed);
  EXPECT_FALSE(testing::ShmExists(name));
}

struct RaceLedger {
  std::atomic<int> go{0};         // parent -> racers: start
  std::atomic<int> attempted{0};  // racers that made their one Create call
  std::atomic<int> winners{0};    // Create succeeded
  std::atomic<int> replaced{0};   // a winner's name came to refer to another file
  std::atomic<int> errors{0};     // Create failed with anything but EEXIST
};

// Several processes find the same stale ring and race to reclaim it, each with one
// SpscRing::Create(reclaim_stale). Exactly one may win, and its segment must keep its name
// while the losers finish (before same-file unlinking, a loser that had judged the old file
// stale removed the winner's new one by name and then won too).
TEST(StaleRemoval, RacingReclaimersNeverRemoveTheWinnersSegment) {
  constexpr int kRacers = 4;
  constexpr int kRounds = 15;
  const std::string name = testing::UniqueShmName("stale-race");
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // A stale ring: its creator is killed before it can remove the name.
    testing::Signal ready;
    const pid_t creator = testing::ForkChild([&]() -> int {
      SpscRing::CreateOptions keep;
      keep.unlink = UnlinkPolicy::kKeep;
      auto ring = SpscRing::Create(name, 4096, keep);
      if (!ring) return 3;
      ready.Notify();
      for (;;) ::pause();
    });
    ASSERT_TRUE(ready.Wait());
    ::kill(creator, SIGKILL);
    ASSERT_EQ(testing::WaitChild(creator), 128 + SIGKILL);
    ASSERT_TRUE(testing::ShmExists(name));

    auto* ledger = testing::NewShared<RaceLedger>();
    std::vector<pid_t> racers;
    for (int i = 0; i < kRacers; ++i) {
      racers.push_back(testing::ForkChild([&]() -> int {
        // SYNC: acquire pairs with the parent's release store of go (nothing else to order).
        while (ledger->go.load(std::memory_order_acquire) == 0) std::this_thread::yield();
        auto ring = SpscRing::Create(name, 4096);  // reclaim_stale, unlink on destroy
        // SYNC: seq_cst counters; the winner below waits for every attempt before checking.
        ledger->attempted.fetch_add(1);
        if (!ring) {
          if (ring.error() != std::errc::file_exists) ledger->errors.fetch_add(1);
          return 0;
        }
        ledger->winners.fetch_add(1);
        const ino_t mine = InodeOfFd(ring->segment().fd());
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (ledger->attempted.load() < kRacers && std::chrono::steady_clock::now() < until) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        if (InodeOfName(name) != mine) ledger->replaced.fetch_add(1);
        return 0;
      }));
    }
    ledger->go.store(1, std::memory_order_release);
    for (pid_t p : racers) EXPECT_EQ(testing::WaitChild(p), 0);
    EXPECT_EQ(ledger->attempted.load(), kRacers);
    EXPECT_EQ(ledger->winners.load(), 1);
    EXPECT_EQ(ledger->replaced.load(), 0);
    EXPECT_EQ(ledger->errors.load(), 0);
    EXPECT_FALSE(testing::ShmExists(name));  // the winner removed its own segment
    testing::DeleteShared(ledger);
    if (::testing::Test::HasFailure()) break;
  }
}

}  // namespace
}  // namespace shmlink
