// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// DecideHolderState with kernel evidence: a real child process holds an OFD lock on a
// holder slot of a real file; the verdict is alive while it lives, dead after kill -9. And
// /proc evidence: our own identity is alive, a reaped child's is dead, and an identity that
// /proc cannot decide is unknown, never dead.
#include "cli/holder_state.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include <shmlink/process_identity.h>
#include <shmlink/segment_header.h>
#include <shmlink/spsc_layout.h>

namespace shmlink::cli {
namespace {

TEST(HolderStateTest, LockSlotAliveThenDeadAfterKill9) {
  char path[] = "/tmp/shmlink-holder-state-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::unlink(path);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    // A fresh open file description, as a HolderLock token is.
    const int token = ::open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDWR);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = static_cast<off_t>(kHolderLockBase + 3);
    fl.l_len = 1;
    if (token < 0 || ::fcntl(token, F_OFD_SETLK, &fl) != 0) std::_Exit(1);
    (void)!::write(ready[1], "r", 1);
    for (;;) ::pause();
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  const ProcessTable procs;
  Holder h;
  h.role = "producer";
  h.identity = IdentityOf(child).Pack();
  h.lock_slot = 3;
  DecideHolderState(fd, procs, h);
  EXPECT_EQ(h.state, HolderState::kAlive) << h.why;
  Holder other = h;
  other.lock_slot = 4;  // nobody holds slot 4
  DecideHolderState(fd, procs, other);
  EXPECT_EQ(other.state, HolderState::kDead) << other.why;
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  DecideHolderState(fd, procs, h);
  EXPECT_EQ(h.state, HolderState::kDead) << h.why;
  ::close(fd);
  ::close(ready[0]);
  ::close(ready[1]);
}

// Layout-4 SPSC rings and connections hold their roles and creator as locks (spsc_layout.h
// slots); other kinds and older layouts keep none: /proc decides for them.
TEST(HolderStateTest, LockSlotsOfLayout4Rings) {
  const auto ring = static_cast<uint32_t>(SegmentKind::kSpscRing);
  const auto conn = static_cast<uint32_t>(SegmentKind::kConnection);
  EXPECT_EQ(LockSlotFor(4, ring, HolderRole::kRingProducer, 0), SpscProducerHolderSlot(0));
  EXPECT_EQ(LockSlotFor(4, ring, HolderRole::kRingConsumer, 0), SpscConsumerHolderSlot(0));
  EXPECT_EQ(LockSlotFor(4, conn, HolderRole::kRingConsumer, 1), uint64_t{3});
  EXPECT_EQ(LockSlotFor(4, conn, HolderRole::kCreator, 0), kCreatorHolderSlot);
  EXPECT_EQ(LockSlotFor(3, ring, HolderRole::kRingProducer, 0), std::nullopt);
  // MPMC queues: registry entry i holds slot i, the creator kCreatorHolderSlot
  // (mpmc_layout.h); shared objects: the creator only.
  const auto queue = static_cast<uint32_t>(SegmentKind::kMpmcQueue);
  const auto object = static_cast<uint32_t>(SegmentKind::kSharedObject);
  EXPECT_EQ(LockSlotFor(4, queue, HolderRole::kQueueEntry, 0), uint64_t{0});
  EXPECT_EQ(LockSlotFor(4, queue, HolderRole::kQueueEntry, 254), uint64_t{254});
  EXPECT_EQ(LockSlotFor(4, queue, HolderRole::kQueueEntry, 255), std::nullopt);
  EXPECT_EQ(LockSlotFor(4, queue, HolderRole::kCreator, 0), kCreatorHolderSlot);
  EXPECT_EQ(LockSlotFor(3, queue, HolderRole::kQueueEntry, 0), std::nullopt);
  EXPECT_EQ(LockSlotFor(4, object, HolderRole::kCreator, 0), kCreatorHolderSlot);
}

TEST(HolderStateTest, ProcEvidence) {
  const ProcessTable procs;
  Holder me;
  me.identity = SelfIdentity()->Pack();
  DecideHolderState(-1, procs, me);
  EXPECT_EQ(me.state, HolderState::kAlive) << me.why;

  const pid_t child = ::fork();
  if (child == 0) std::_Exit(0);
  Holder gone;
  gone.identity = IdentityOf(child).Pack();
  ::waitpid(child, nullptr, 0);
  if (gone.identity == 0) gone.identity = ProcessIdentity{static_cast<uint32_t>(child), 1}.Pack();
  DecideHolderState(-1, procs, gone);
  EXPECT_EQ(gone.state, HolderState::kDead) << gone.why;

  // pid 1 with another start time: the pid now belongs to another process.
  Holder reused;
  reused.identity = ProcessIdentity{1, IdentityOf(1).start_ticks + 12345}.Pack();
  DecideHolderState(-1, procs, reused);
  EXPECT_EQ(reused.state, HolderState::kDead) << reused.why;
}

TEST(HolderStateTest, AllDeadAndUnmappedIsStale) {
  std::vector<Holder> holders(1);
  holders[0].identity = ProcessIdentity{999999, 5}.Pack();
  holders[0].state = HolderState::kDead;
  holders[0].why = "no process 999999";
  const ProcessTable procs;  // nobody maps file (1, 1)
  std::vector<int> mapped_by;
  std::string verdict;
  EXPECT_TRUE(DecideStale(procs, 1, 1, 0, holders, &mapped_by, &verdict)) << verdict;
  EXPECT_EQ(holders[0].state, HolderState::kDead);
  holders[0].state = HolderState::kUnknown;  // unknown is never dead
  EXPECT_FALSE(DecideStale(procs, 1, 1, 0, holders, &mapped_by, &verdict));
  EXPECT_EQ(verdict.rfind("undecided", 0), 0u) << verdict;
}

}  // namespace
}  // namespace shmlink::cli
