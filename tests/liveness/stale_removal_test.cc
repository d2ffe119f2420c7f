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
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/test_util.h"

#include <shmlink/segment.h>
#include <shmlink/spsc_ring.h>
#include <shmlink/topic.h>

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

// Several processes find the same stale segment and race to reclaim it, each with one
// Create(reclaim_stale). Exactly one may win, and its segment must keep its name while the
// losers finish (before same-file unlinking, a loser that had judged the old file stale
// removed the winner's new one by name and then won too). `create(keep)` makes the
// segment (kKeep: the name outlives the process) and returns whether it succeeded, with
// `*inode` its file and `*exists` false for EEXIST.
using CreateFn = std::function<bool(bool keep, ino_t* inode, bool* exists)>;

void RaceReclaimers(const std::string& name, const CreateFn& create) {
  constexpr int kRacers = 4;
  constexpr int kRounds = 15;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // A stale segment: its creator is killed before it can remove the name.
    testing::Signal ready;
    const pid_t creator = testing::ForkChild([&]() -> int {
      ino_t ino = 0;
      bool exists = true;
      if (!create(/*keep=*/true, &ino, &exists)) return 3;
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
        ino_t mine = 0;
        bool exists = true;
        const bool won = create(/*keep=*/false, &mine, &exists);  // the object stays alive
        // SYNC: seq_cst counters; the winner below waits for every attempt before checking.
        ledger->attempted.fetch_add(1);
        if (!won) {
          if (!exists) ledger->errors.fetch_add(1);  // anything but EEXIST
          return 0;
        }
        ledger->winners.fetch_add(1);
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (ledger->attempted.load() < kRacers && std::chrono::steady_clock::now() < until) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        if (InodeOfName(name) != mine) ledger->replaced.fetch_add(1);
        ::shm_unlink(name.c_str());  // the winner's own segment (the name is still ours)
        return 0;
      }));
    }
    ledger->go.store(1, std::memory_order_release);
    for (pid_t p : racers) EXPECT_EQ(testing::WaitChild(p), 0);
    EXPECT_EQ(ledger->attempted.load(), kRacers);
    EXPECT_EQ(ledger->winners.load(), 1);
    EXPECT_EQ(ledger->replaced.load(), 0);
    EXPECT_EQ(ledger->errors.load(), 0);
    EXPECT_FALSE(testing::ShmExists(name));
    testing::DeleteShared(ledger);
    if (::testing::Test::HasFailure()) break;
  }
}

// The created object must outlive the check (it holds the creator lock), so the create
// functions below park it in a static for the rest of the (child) process.
TEST(StaleRemoval, RacingReclaimersNeverRemoveTheWinnersRing) {
  const std::string name = testing::UniqueShmName("stale-race");
  RaceReclaimers(name, [&](bool, ino_t* inode, bool* exists) {
    static std::optional<SpscRing> held;
    SpscRing::CreateOptions o;
    o.unlink = UnlinkPolicy::kKeep;  // the test removes the winner's name itself
    auto ring = SpscRing::Create(name, 4096, o);
    if (!ring) {
      *exists = ring.error() == std::errc::file_exists;
      return false;
    }
    *inode = InodeOfFd(ring->segment().fd());
    held.emplace(std::move(*ring));
    return true;
  });
}

TEST(StaleRemoval, RacingReclaimersNeverRemoveTheWinnersTopic) {
  const std::string name = testing::UniqueShmName("stale-race-topic");
  RaceReclaimers(name, [&](bool, ino_t* inode, bool* exists) {
    static std::optional<Topic> held;
    TopicOptions o;
    o.capacity = 4096;
    o.unlink = UnlinkPolicy::kKeep;
    auto topic = Topic::Create(name, o);
    if (!topic) {
      *exists = topic.error() == std::errc::file_exists;
      return false;
    }
    *inode = InodeOfFd(topic->segment().fd());
    held.emplace(std::move(*topic));
    return true;
  });
}

// A topic whose creator lives (no publisher, no subscriber) is never replaced; once the
// creator is killed it is.
TEST(StaleRemoval, TopicOfALiveCreatorIsKeptAndOfADeadOneReplaced) {
  const std::string name = testing::UniqueShmName("stale-topic-creator");
  testing::Signal ready;
  const pid_t creator = testing::ForkChild([&]() -> int {
    TopicOptions o;
    o.capacity = 4096;
    o.unlink = UnlinkPolicy::kKeep;
    auto topic = Topic::Create(name, o);
    if (!topic) return 3;
    ready.Notify();
    for (;;) ::pause();
  });
  ASSERT_TRUE(ready.Wait());
  TopicOptions o;
  o.capacity = 4096;
  auto again = Topic::Create(name, o);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), std::errc::file_exists);
  ::kill(creator, SIGKILL);
  ASSERT_EQ(testing::WaitChild(creator), 128 + SIGKILL);
  again = Topic::Create(name, o);  // unlinks on destroy
  ASSERT_TRUE(again) << again.error().message();
}

}  // namespace
}  // namespace shmlink
