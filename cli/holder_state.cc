// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "cli/holder_state.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <shmlink/mpmc_layout.h>
#include <shmlink/process_identity.h>
#include <shmlink/segment_header.h>
#include <shmlink/spsc_layout.h>

namespace shmlink::cli {
namespace {

constexpr uint64_t kPfExiting = 0x4;                // PF_EXITING
constexpr uint64_t kSigKillBit = uint64_t{1} << 8;  // SIGKILL in a pending-signal mask

bool AllDigits(const char* s) {
  if (*s == '\0') return false;
  for (; *s != '\0'; ++s) {
    if (*s < '0' || *s > '9') return false;
  }
  return true;
}

// Reads a small /proc file whole. Returns errno (0: ok).
int ReadSmall(const std::string& path, std::string* out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  char buf[4096];
  out->clear();
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return err;
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > (1u << 20)) break;
  }
  ::close(fd);
  return 0;
}

bool HidepidMounted() {
  std::string info;
  if (ReadSmall("/proc/self/mountinfo", &info) != 0) return false;
  std::istringstream in(info);
  std::string line;
  while (std::getline(in, line)) {
    // "... <mount point> <options> ... - proc proc <super options>"
    if (line.find(" - proc ") == std::string::npos) continue;
    if (line.find(" /proc ") == std::string::npos) continue;
    if (line.find("hidepid=") != std::string::npos && line.find("hidepid=0") == std::string::npos &&
        line.find("hidepid=off") == std::string::npos) {
      return true;
    }
  }
  return false;
}

// /proc evidence for one identity.
HolderState ProcState(ProcessIdentity id, bool hidepid, std::string* why) {
  if (id.pid == 0) {
    *why = "no holder recorded";
    return HolderState::kDead;
  }
  std::string stat;
  const std::string path = "/proc/" + std::to_string(id.pid) + "/stat";
  const int err = ReadSmall(path, &stat);
  if (err == ENOENT || err == ESRCH) {
    if (hidepid) {
      *why = "pid " + std::to_string(id.pid) + " not visible (/proc mounted with hidepid)";
      return HolderState::kUnknown;
    }
    *why = "no process " + std::to_string(id.pid);
    return HolderState::kDead;
  }
  if (err != 0) {
    *why = "cannot read " + path + ": " + std::strerror(err);
    return HolderState::kUnknown;
  }
  const size_t close_paren = stat.rfind(')');
  if (close_paren == std::string::npos || close_paren + 2 >= stat.size()) {
    *why = "unparsable " + path;
    return HolderState::kUnknown;
  }
  std::istringstream in(stat.substr(close_paren + 2));
  std::string field;
  std::vector<std::string> f;  // f[0] is field 3 (state)
  while (in >> field && f.size() < 40) f.push_back(field);
  if (f.size() < 29) {
    *why = "unparsable " + path;
    return HolderState::kUnknown;
  }
  const char state = f[0][0];
  const uint64_t flags = std::strtoull(f[9 - 3].c_str(), nullptr, 10);
  uint64_t start = std::strtoull(f[22 - 3].c_str(), nullptr, 10);
  const uint64_t pending = std::strtoull(f[31 - 3].c_str(), nullptr, 10);
  if (start == 0) start = 1;
  constexpr uint64_t kMask = (uint64_t{1} << (64 - ProcessIdentity::kPidBits)) - 1;
  if ((start & kMask) != (id.start_ticks & kMask)) {
    *why = "pid " + std::to_string(id.pid) + " now belongs to another process";
    return HolderState::kDead;
  }
  if (state == 'Z' || state == 'X' || state == 'x') {
    *why = "process " + std::to_string(id.pid) + " is a zombie";
    return HolderState::kDead;
  }
  if (flags & kPfExiting) {
    *why = "process " + std::to_string(id.pid) + " is exiting";
    return HolderState::kDead;
  }
  std::string status;
  bool killed = (pending & kSigKillBit) != 0;
  if (!killed && ReadSmall("/proc/" + std::to_string(id.pid) + "/status", &status) == 0) {
    const size_t p = status.find("\nShdPnd:");
    if (p != std::string::npos) {
      killed = (std::strtoull(status.c_str() + p + 8, nullptr, 16) & kSigKillBit) != 0;
    }
  }
  if (killed) {
    *why = "process " + std::to_string(id.pid) + " was sent SIGKILL";
    return HolderState::kDead;
  }
  *why = "process " + std::to_string(id.pid) + " is running";
  return HolderState::kAlive;
}

// OFD lock evidence (the same query as ProbeHolder, through any fd of the file: a GETLK
// needs no write access). The segment's holders lock through their own token OFDs, never
// through ours, so our fd sees every holder's lock as a conflict.
HolderState LockState(int fd, uint64_t slot, std::string* why) {
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(kHolderLockBase + slot);
  fl.l_len = 1;
  if (::fcntl(fd, F_OFD_GETLK, &fl) != 0) {
    *why = std::string("lock probe failed: ") + std::strerror(errno);
    return HolderState::kUnknown;
  }
  if (fl.l_type == F_UNLCK) {
    *why = "holder lock released (kernel)";
    return HolderState::kDead;
  }
  *why = "holder lock held (kernel)";
  return HolderState::kAlive;
}

}  // namespace

ProcessTable ProcessTable::Scan() {
  ProcessTable t;
  t.hidepid_ = ::geteuid() != 0 && HidepidMounted();
  const int self = ::getpid();
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return t;
  while (dirent* e = ::readdir(proc)) {
    if (!AllDigits(e->d_name)) continue;
    const int pid = std::atoi(e->d_name);
    if (pid == self) continue;
    const std::string base = std::string("/proc/") + e->d_name;
    struct stat pst {};
    if (::stat(base.c_str(), &pst) != 0) continue;  // gone
    bool unreadable = false;
    // Mappings: "addr perms offset dev inode path"; dev is "major:minor" in hex.
    std::string maps;
    const int err = ReadSmall(base + "/maps", &maps);
    if (err == 0) {
      std::istringstream in(maps);
      std::string line;
      while (std::getline(in, line)) {
        char dev[32];
        unsigned long long inode = 0;
        if (std::sscanf(line.c_str(), "%*s %*s %*s %31s %llu", dev, &inode) != 2 || inode == 0) {
          continue;
        }
        unsigned maj = 0, min = 0;
        if (std::sscanf(dev, "%x:%x", &maj, &min) != 2) continue;
        t.users_[{makedev(maj, min), inode}].insert(pid);
      }
    }
    // An unreadable maps file (e.g. a non-dumpable process) is not a blind spot for
    // shmlink segments: every shmlink process keeps the fd of each segment it maps open
    // (Segment owns it), so the fd table below finds it. Only an unreadable fd table is.
    (void)err;
    const std::string fddir = base + "/fd";
    if (DIR* fds = ::opendir(fddir.c_str())) {
      while (dirent* f = ::readdir(fds)) {
        if (!AllDigits(f->d_name)) continue;
        struct stat st {};
        if (::stat((fddir + "/" + f->d_name).c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
          t.users_[{st.st_dev, st.st_ino}].insert(pid);
        }
      }
      ::closedir(fds);
    } else if (errno != ENOENT && errno != ESRCH) {
      unreadable = true;
    }
    if (unreadable) t.unreadable_[pst.st_uid].push_back(pid);
  }
  ::closedir(proc);
  return t;
}

std::vector<int> ProcessTable::UsersOf(uint64_t dev, uint64_t ino) const {
  auto it = users_.find({dev, ino});
  if (it == users_.end()) return {};
  return {it->second.begin(), it->second.end()};
}

std::vector<int> ProcessTable::UnreadableOf(uint32_t uid) const {
  auto it = unreadable_.find(uid);
  return it == unreadable_.end() ? std::vector<int>{} : it->second;
}

std::optional<uint64_t> LockSlotFor(uint32_t version, uint32_t kind, HolderRole role,
                                    uint32_t index) {
  if (version < kFirstHolderLockLayout) return std::nullopt;
  const auto k = static_cast<SegmentKind>(kind);
  // MPMC queues (mpmc_layout.h LIVENESS): registry entry i holds slot i, the creator
  // kCreatorHolderSlot. Shared objects: the creator only (attachers are not registered).
  if (k == SegmentKind::kMpmcQueue) {
    if (role == HolderRole::kCreator) return kCreatorHolderSlot;
    if (role == HolderRole::kQueueEntry && index < kMpmcMaxHandles) return uint64_t{index};
    return std::nullopt;
  }
  if (k == SegmentKind::kSharedObject) {
    if (role == HolderRole::kCreator) return kCreatorHolderSlot;
    return std::nullopt;
  }
  if (k != SegmentKind::kSpscRing && k != SegmentKind::kConnection) return std::nullopt;
  switch (role) {
    case HolderRole::kCreator:
      return kCreatorHolderSlot;
    case HolderRole::kRingProducer:
      return SpscProducerHolderSlot(index);
    case HolderRole::kRingConsumer:
      return SpscConsumerHolderSlot(index);
    case HolderRole::kQueueEntry:
      return std::nullopt;
  }
  return std::nullopt;
}

void DecideHolderState(int segment_fd, const ProcessTable& procs, Holder& h) {
  const ProcessIdentity id = ProcessIdentity::Unpack(h.identity);
  h.pid = id.pid;
  h.start_ticks = id.start_ticks;
  if (h.lock_slot.has_value()) {
    // Kernel evidence that needs no /proc: used wherever the segment kind assigns slots.
    h.state = LockState(segment_fd, *h.lock_slot, &h.why);
    return;
  }
  h.state = ProcState(id, procs.hidepid(), &h.why);
}

bool DecideStale(const ProcessTable& procs, uint64_t dev, uint64_t ino, uint32_t owner_uid,
                 std::vector<Holder>& holders, std::vector<int>* mapped_by, std::string* verdict) {
  *mapped_by = procs.UsersOf(dev, ino);
  std::set<int> live_holders;
  for (const Holder& h : holders) {
    if (h.state == HolderState::kAlive) live_holders.insert(static_cast<int>(h.pid));
  }
  std::vector<int> unexplained;
  for (int pid : *mapped_by) {
    if (live_holders.count(pid) == 0) unexplained.push_back(pid);
  }
  if (!unexplained.empty()) {
    // Somebody we cannot match to a live holder uses the file: possibly a holder in another
    // PID namespace, whose pid /proc cannot resolve. /proc's "dead" is then not evidence.
    for (Holder& h : holders) {
      if (h.state == HolderState::kDead && !h.lock_slot.has_value() && h.identity != 0) {
        h.state = HolderState::kUnknown;
        h.why += "; but pid " + std::to_string(unexplained.front()) +
                 " maps the segment (holder in another PID namespace?)";
      }
    }
  }
  bool any_alive = false, any_unknown = false;
  for (const Holder& h : holders) {
    if (h.state == HolderState::kAlive) any_alive = true;
    if (h.state == HolderState::kUnknown) any_unknown = true;
  }
  if (any_alive) {
    *verdict = "in use: a holder is alive";
    return false;
  }
  if (!mapped_by->empty()) {
    *verdict = "in use: mapped or open by pid " + std::to_string(mapped_by->front());
    return false;
  }
  if (any_unknown) {
    *verdict = "undecided: a holder's state is unknown";
    return false;
  }
  const std::vector<int> blind = procs.UnreadableOf(owner_uid);
  if (!blind.empty()) {
    *verdict = "undecided: cannot read the mappings of pid " + std::to_string(blind.front()) +
               " (same owner)";
    return false;
  }
  if (holders.empty()) {
    *verdict = "undecided: no holder recorded";
    return false;
  }
  *verdict = "stale: every holder is dead and nobody maps it";
  return true;
}

}  // namespace shmlink::cli
