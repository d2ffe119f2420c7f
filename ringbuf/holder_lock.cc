// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <mutex>
#include <utility>
#include <vector>

#include <shmlink/holder_lock.h>

namespace shmlink {

namespace {

// The registry of token fds held by this process, keyed by a serial that is never reused
// (so an object inherited across fork can never mistake a child's new token for its own).
// Guarded by Registry::mu, which the atfork prepare handler takes: a fork never happens
// between a token's open and its registration, nor between its close and its removal.
struct TokenEntry {
  uint64_t serial;  // 0: free entry
  int fd;
  dev_t dev;  // the token's file, to recognise the fd number as still ours (CloseIfOurs)
  ino_t ino;
};

// Closes a token fd unless the program closed it behind our back and the number now
// names another file (then closing it would close somebody else's fd; our lock is gone
// with the close anyway). A reused number that names the same segment file again cannot
// be told apart and is closed. Async-signal-safe (used in the atfork child handler).
void CloseIfOurs(const TokenEntry& e) {
  struct stat st {};
  if (::fstat(e.fd, &st) != 0 || st.st_dev != e.dev || st.st_ino != e.ino) return;
  ::close(e.fd);
}

struct Registry {
  std::mutex mu;
  std::vector<TokenEntry> entries;
  uint64_t next_serial = 1;
};

Registry& GetRegistry() {
  // Leaked on purpose: tokens may be released from static destructors of other objects.
  static Registry* r = new Registry();
  return *r;
}

void AtforkPrepare() { GetRegistry().mu.lock(); }
void AtforkParent() { GetRegistry().mu.unlock(); }
// In the child (single-threaded, the forking thread's copy holds mu): close every inherited
// token so the child holds none of the parent's slots. No allocation here.
void AtforkChild() {
  Registry& r = GetRegistry();
  for (TokenEntry& e : r.entries) {
    if (e.serial != 0) CloseIfOurs(e);
    e.serial = 0;
    e.fd = -1;
  }
  r.mu.unlock();
}

void InstallAtforkOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (::pthread_atfork(AtforkPrepare, AtforkParent, AtforkChild) != 0) {
      // Without the handler a forked child would keep its parent's tokens alive: refuse to
      // run in that state rather than report a dead holder as alive later.
      std::fputs("shmlink: pthread_atfork failed\n", stderr);
      std::abort();
    }
  });
}

// A fresh open file description of the segment's file (see holder_lock.h). Called with the
// registry mutex held. Returns the fd or -errno.
int OpenToken(const Segment& segment) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/self/fd/%d", segment.fd());
  int fd = ::open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (fd >= 0) return fd;
  const int err = errno;
  // Only a missing /proc (or a path we may not follow) justifies the by-name fallback; fd
  // exhaustion and the like are reported as they are.
  if ((err != ENOENT && err != EACCES && err != ENOTDIR) || segment.name().empty()) return -err;
  fd = ::shm_open(segment.name().c_str(), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) return -errno;
  struct stat mine {
  }, theirs{};
  if (::fstat(segment.fd(), &mine) != 0 || ::fstat(fd, &theirs) != 0 ||
      mine.st_dev != theirs.st_dev || mine.st_ino != theirs.st_ino) {
    ::close(fd);  // the name now names another file: locking it would vouch for nothing
    return -ESTALE;
  }
  return fd;
}

struct flock SlotLock(short type, uint64_t slot) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(kHolderLockBase + slot);
  fl.l_len = 1;
  fl.l_pid = 0;  // required by F_OFD_* commands
  return fl;
}

}  // namespace

const char* HolderStateName(HolderState s) noexcept {
  switch (s) {
    case HolderState::kAlive:
      return "alive";
    case HolderState::kDead:
      return "dead";
    case HolderState::kUnknown:
      return "unknown";
  }
  return "?";
}

Expected<HolderLock> HolderLock::Acquire(const Segment& segment, uint64_t slot) {
  if (slot >= kMaxHolderSlots || segment.fd() < 0) return RingErrc::kInvalidArgument;
  InstallAtforkOnce();
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> guard(r.mu);
  // Find (or make) a free entry first: nothing below may fail after the fd exists.
  size_t index = r.entries.size();
  for (size_t i = 0; i < r.entries.size(); ++i) {
    if (r.entries[i].serial == 0) {
      index = i;
      break;
    }
  }
  if (index == r.entries.size()) r.entries.push_back({0, -1, 0, 0});
  const int fd = OpenToken(segment);
  if (fd < 0) return ErrnoError(-fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoError(err);
  }
  struct flock fl = SlotLock(F_WRLCK, slot);
  if (::fcntl(fd, F_OFD_SETLK, &fl) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EAGAIN || err == EACCES) return RingErrc::kRoleTaken;
    return ErrnoError(err);
  }
  const uint64_t serial = r.next_serial++;
  r.entries[index] = {serial, fd, st.st_dev, st.st_ino};
  return HolderLock(serial, slot);
}

HolderLock::HolderLock(HolderLock&& other) noexcept
    : serial_(std::exchange(other.serial_, 0)), slot_(other.slot_) {}

HolderLock& HolderLock::operator=(HolderLock&& other) noexcept {
  if (this != &other) {
    Release();
    serial_ = std::exchange(other.serial_, 0);
    slot_ = other.slot_;
  }
  return *this;
}

HolderLock::~HolderLock() { Release(); }

bool HolderLock::held_here() const noexcept {
  if (serial_ == 0) return false;
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> guard(r.mu);
  for (const TokenEntry& e : r.entries) {
    if (e.serial == serial_) return true;
  }
  return false;  // inherited across fork: the child's registry starts empty
}

void HolderLock::Release() noexcept {
  if (serial_ == 0) return;
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> guard(r.mu);
  for (TokenEntry& e : r.entries) {
    if (e.serial == serial_) {
      CloseIfOurs(e);  // drops the lock: this was the OFD's only fd
      e.serial = 0;
      e.fd = -1;
      break;
    }
  }
  // Not found: this object was inherited across fork; the child never held the token.
  serial_ = 0;
}

HolderState ProbeHolder(const Segment& segment, uint64_t slot) noexcept {
  if (slot >= kMaxHolderSlots || segment.fd() < 0) return HolderState::kUnknown;
  struct flock fl = SlotLock(F_WRLCK, slot);
  if (::fcntl(segment.fd(), F_OFD_GETLK, &fl) != 0) return HolderState::kUnknown;
  if (fl.l_type == F_UNLCK) return HolderState::kDead;
  return HolderState::kAlive;
}

HolderState ProbeAnyHolder(const Segment& segment, uint64_t first, uint64_t count) noexcept {
  if (count == 0 || first >= kMaxHolderSlots || count > kMaxHolderSlots - first ||
      segment.fd() < 0) {
    return HolderState::kUnknown;
  }
  struct flock fl = SlotLock(F_WRLCK, first);
  fl.l_len = static_cast<off_t>(count);
  if (::fcntl(segment.fd(), F_OFD_GETLK, &fl) != 0) return HolderState::kUnknown;
  if (fl.l_type == F_UNLCK) return HolderState::kDead;
  return HolderState::kAlive;
}

}  // namespace shmlink
