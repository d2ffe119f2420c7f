// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// SharedMemory (ringbuf/shared_memory.h): a plain named shm block, created and attached
// across real fork()ed processes; typed errors for missing names, non-regular files,
// existing names, empty blocks and bad names; ownership (only Unlink() removes the name).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <type_traits>

#include "tests/test_util.h"

#include <shmlink/shared_memory.h>

namespace shmlink {
namespace {

using testing::ShmExists;
using testing::ShmFiles;

static_assert(!std::is_copy_constructible_v<SharedMemory>);
static_assert(!std::is_copy_assignable_v<SharedMemory>);
static_assert(std::is_nothrow_move_constructible_v<SharedMemory>);
static_assert(std::is_nothrow_move_assignable_v<SharedMemory>);

constexpr auto kChildLimit = std::chrono::seconds(30);

// Byte i of the pattern `seed` (distinct per seed, not periodic in 256).
std::byte Pattern(size_t i, unsigned seed) {
  return static_cast<std::byte>((i * 131 + i / 251 + seed * 17) & 0xff);
}
void Fill(std::span<std::byte> b, unsigned seed) {
  for (size_t i = 0; i < b.size(); ++i) b[i] = Pattern(i, seed);
}
bool Holds(std::span<const std::byte> b, unsigned seed) {
  for (size_t i = 0; i < b.size(); ++i) {
    if (b[i] != Pattern(i, seed)) return false;
  }
  return true;
}

// Every test's names start with this process's prefix; TearDown checks none is left.
class SharedMemoryTest : public ::testing::Test {
 protected:
  std::string Name() { return testing::UniqueShmName("shm"); }
  void TearDown() override {
    const std::string prefix = "shmlink-test-shm-" + std::to_string(::getpid()) + "-";
    for (const std::string& f : ShmFiles(prefix)) {
      ADD_FAILURE() << "left behind: /dev/shm/" << f;
      ::unlink(("/dev/shm/" + f).c_str());
      ::rmdir(("/dev/shm/" + f).c_str());
    }
  }
};

// A FIFO or directory planted under a shm name, removed again on destruction.
struct Planted {
  explicit Planted(std::string n) : name(std::move(n)), path("/dev/shm" + name) {}
  ~Planted() {
    ::unlink(path.c_str());
    ::rmdir(path.c_str());
  }
  std::string name;
  std::string path;
};

TEST_F(SharedMemoryTest, ForkedAttacherReadsAndWritesAndOnlyUnlinkRemovesTheName) {
  const std::string name = Name();
  const int fds_before = testing::OpenFdCount();
  {
    constexpr size_t kSize = 64 * 1024;
    auto shm = SharedMemory::Create(name, kSize);
    ASSERT_TRUE(shm) << shm.error().message();
    EXPECT_EQ(shm->size(), kSize);
    EXPECT_EQ(shm->bytes().size(), kSize);
    EXPECT_EQ(shm->name(), name);
    Fill(shm->bytes().first(kSize / 2), 1);

    const pid_t child = testing::ForkChild([&] {
      auto peer = SharedMemory::Attach(name);
      if (!peer) return 10;
      if (peer->size() != kSize) return 11;
      if (!Holds(peer->bytes().first(kSize / 2), 1)) return 12;
      Fill(peer->bytes().last(kSize / 2), 2);
      return 0;  // the attacher's destructor runs here: it must not unlink
    });
    ASSERT_GT(child, 0);
    ASSERT_EQ(testing::WaitChildFor(child, kChildLimit), 0);
    EXPECT_TRUE(Holds(shm->bytes().last(kSize / 2), 2));
    EXPECT_TRUE(ShmExists(name));  // the attacher's exit removed nothing

    // A second attach in this process sees the same memory.
    auto again = SharedMemory::Attach(name);
    ASSERT_TRUE(again);
    again->bytes()[0] = std::byte{0x5a};
    EXPECT_EQ(shm->bytes()[0], std::byte{0x5a});

    ASSERT_TRUE(shm->Unlink());
    EXPECT_FALSE(ShmExists(name));
    // Mappings stay valid after the unlink; a second unlink finds nothing to remove.
    EXPECT_TRUE(Holds(again->bytes().last(kSize / 2), 2));
    EXPECT_EQ(again->Unlink().error(), std::errc::no_such_file_or_directory);
    EXPECT_EQ(SharedMemory::Attach(name).error(), std::errc::no_such_file_or_directory);
  }
  EXPECT_EQ(testing::OpenFdCount(), fds_before);  // destructors closed everything
}

TEST_F(SharedMemoryTest, ForkedCreatorsExitLeavesTheBlockForTheAttacherToUnlink) {
  const std::string name = Name();
  const pid_t child = testing::ForkChild([&] {
    auto shm = SharedMemory::Create(name, 4096);
    if (!shm) return 10;
    Fill(shm->bytes(), 3);
    return 0;  // destroyed without Unlink(): the name stays
  });
  ASSERT_GT(child, 0);
  ASSERT_EQ(testing::WaitChildFor(child, kChildLimit), 0);
  ASSERT_TRUE(ShmExists(name));
  auto shm = SharedMemory::Attach(name);
  ASSERT_TRUE(shm) << shm.error().message();
  EXPECT_EQ(shm->size(), 4096u);
  EXPECT_TRUE(Holds(shm->bytes(), 3));
  ASSERT_TRUE(shm->Unlink());  // any process may unlink
  EXPECT_FALSE(ShmExists(name));
}

TEST_F(SharedMemoryTest, SizeIsTheFilesSizeNotRounded) {
  for (size_t size : {size_t{1}, size_t{4095}, size_t{4097}}) {
    const std::string name = Name();
    auto shm = SharedMemory::Create(name, size);
    ASSERT_TRUE(shm) << size;
    auto peer = SharedMemory::Attach(name);
    ASSERT_TRUE(peer) << size;
    EXPECT_EQ(peer->size(), size);
    ASSERT_TRUE(shm->Unlink());
  }
}

TEST_F(SharedMemoryTest, AttachMissingNameIsENOENT) {
  auto a = SharedMemory::Attach(Name());
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error(), std::errc::no_such_file_or_directory);
}

TEST_F(SharedMemoryTest, FifoOrDirectoryIsWrongKindAndNeverBlocks) {
  Planted fifo(Name());
  ASSERT_EQ(::mkfifo(fifo.path.c_str(), 0600), 0) << std::strerror(errno);
  auto f = SharedMemory::Attach(fifo.name);  // no writer ever opens it: must not block
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error(), RingErrc::kWrongKind) << f.error().message();
  EXPECT_EQ(SharedMemory::Create(fifo.name, 4096).error(), std::errc::file_exists);

  Planted dir(Name());
  ASSERT_EQ(::mkdir(dir.path.c_str(), 0700), 0) << std::strerror(errno);
  auto d = SharedMemory::Attach(dir.name);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error(), RingErrc::kWrongKind) << d.error().message();
  EXPECT_EQ(SharedMemory::Create(dir.name, 4096).error(), std::errc::file_exists);
}

TEST_F(SharedMemoryTest, CreateOnAnExistingNameIsEEXISTAndLeavesItAlone) {
  const std::string name = Name();
  auto shm = SharedMemory::Create(name, 4096);
  ASSERT_TRUE(shm);
  Fill(shm->bytes(), 4);
  auto again = SharedMemory::Create(name, 8192);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), std::errc::file_exists);
  auto peer = SharedMemory::Attach(name);
  ASSERT_TRUE(peer);
  EXPECT_EQ(peer->size(), 4096u);
  EXPECT_TRUE(Holds(peer->bytes(), 4));
  ASSERT_TRUE(shm->Unlink());
}

TEST_F(SharedMemoryTest, ZeroSizeAttachIsTruncated) {
  // As a creator between its shm_open and its ftruncate (Python's SharedMemory does both).
  const std::string name = Name();
  const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  auto a = SharedMemory::Attach(name);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error(), RingErrc::kTruncated);
  ASSERT_EQ(::ftruncate(fd, 100), 0);  // sized now: attaching works
  auto b = SharedMemory::Attach(name);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->size(), 100u);
  ::close(fd);
  ASSERT_TRUE(b->Unlink());
}

TEST_F(SharedMemoryTest, BadNamesAndSizesAreTypedErrors) {
  for (const std::string& bad : {std::string(""), std::string("/"), std::string("noslash"),
                                 std::string("/a/b"), std::string("/sp ace"), std::string("/star*"),
                                 std::string("/.."), "/" + std::string(255, 'x')}) {
    auto c = SharedMemory::Create(bad, 4096);
    ASSERT_FALSE(c) << bad;
    EXPECT_EQ(c.error(), RingErrc::kInvalidName) << bad;
    auto a = SharedMemory::Attach(bad);
    ASSERT_FALSE(a) << bad;
    EXPECT_EQ(a.error(), RingErrc::kInvalidName) << bad;
  }
  const std::string name = Name();
  EXPECT_EQ(SharedMemory::Create(name, 0).error(), RingErrc::kInvalidArgument);
  EXPECT_EQ(SharedMemory::Create(name, SharedMemory::kMaxSize + 1).error(),
            RingErrc::kInvalidArgument);
  EXPECT_FALSE(ShmExists(name));
}

TEST_F(SharedMemoryTest, ModeIsAppliedDespiteTheUmask) {
  const std::string name = Name();
  const mode_t old = ::umask(077);
  auto shm = SharedMemory::Create(name, 4096, 0640);
  ::umask(old);
  ASSERT_TRUE(shm);
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm" + name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  ASSERT_TRUE(shm->Unlink());
}

TEST_F(SharedMemoryTest, UnlinkLeavesANameReCreatedByOthersAlone) {
  const std::string name = Name();
  auto first = SharedMemory::Create(name, 4096);
  ASSERT_TRUE(first);
  ASSERT_EQ(::shm_unlink(name.c_str()), 0);  // someone else unlinks and re-creates it
  auto second = SharedMemory::Create(name, 4096);
  ASSERT_TRUE(second);
  EXPECT_EQ(first->Unlink().error(), std::errc::no_such_file_or_directory);
  EXPECT_TRUE(ShmExists(name));
  ASSERT_TRUE(second->Unlink());
}

TEST_F(SharedMemoryTest, MovedFromHoldsNothing) {
  const std::string name = Name();
  auto shm = SharedMemory::Create(name, 4096);
  ASSERT_TRUE(shm);
  std::byte* const data = shm->bytes().data();
  SharedMemory moved(std::move(*shm));
  EXPECT_EQ(moved.bytes().data(), data);
  EXPECT_EQ(moved.size(), 4096u);
  EXPECT_TRUE(shm->bytes().empty());
  EXPECT_EQ(shm->Unlink().error(), RingErrc::kBadState);
  auto other = SharedMemory::Create(Name(), 8192);
  ASSERT_TRUE(other);
  ASSERT_TRUE(other->Unlink());
  moved = std::move(*other);  // the old block is unmapped and closed, not unlinked
  EXPECT_EQ(moved.size(), 8192u);
  EXPECT_TRUE(ShmExists(name));
  ASSERT_EQ(::shm_unlink(name.c_str()), 0);
}

}  // namespace
}  // namespace shmlink
