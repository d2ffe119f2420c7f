// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "cli/segment_report.h"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>

#include <shmlink/mpmc_layout.h>
#include <shmlink/process_identity.h>
#include <shmlink/ring_error.h>
#include <shmlink/segment_header.h>
#include <shmlink/shared_object.h>
#include <shmlink/spsc_layout.h>

namespace shmlink::cli {
namespace {

// ---- SIGBUS guard: a mapped file truncated under us faults; the copy is abandoned instead.
thread_local sigjmp_buf* g_jump = nullptr;

void OnSigbus(int sig) {
  if (g_jump != nullptr) siglongjmp(*g_jump, 1);
  ::signal(sig, SIG_DFL);  // not ours: die as the default action would
  ::raise(sig);
}

// Copies `words` 64-bit words from the mapping at `src` (8-aligned) into `dst` with atomic
// relaxed loads (no torn owner words; statistics need no order). False if the file was
// truncated under the mapping (SIGBUS). Only PODs live across the jump.
bool GuardedCopy(uint64_t* dst, const std::byte* src, size_t words) {
  sigjmp_buf jump;
  if (sigsetjmp(jump, 1) != 0) {
    g_jump = nullptr;
    return false;
  }
  g_jump = &jump;
  auto* p = reinterpret_cast<uint64_t*>(const_cast<std::byte*>(src));
  for (size_t i = 0; i < words; ++i) {
    // Relaxed: a snapshot for display; see role_stats.h.
    dst[i] = std::atomic_ref<uint64_t>(p[i]).load(std::memory_order_relaxed);
  }
  g_jump = nullptr;
  return true;
}

// A copied region, read by byte offset (relative to the region start).
class Words {
 public:
  explicit Words(size_t bytes) : w_((bytes + 7) / 8, 0) {}
  uint64_t* data() { return w_.data(); }
  size_t words() const { return w_.size(); }
  uint64_t U64(size_t off) const { return off / 8 < w_.size() ? w_[off / 8] : 0; }
  uint32_t U32(size_t off) const {
    const uint64_t v = U64(off & ~size_t{7});
    return static_cast<uint32_t>((off & 7) != 0 ? v >> 32 : v);
  }
  RoleCounts Role(size_t off) const {
    RoleCounts r;
    r.messages = U64(off + offsetof(RoleStats, messages));
    r.bytes = U64(off + offsetof(RoleStats, bytes));
    r.waits = U64(off + offsetof(RoleStats, waits));
    r.sleeps = U64(off + offsetof(RoleStats, sleeps));
    r.wakeups = U64(off + offsetof(RoleStats, wakeups));
    r.wake_calls = U64(off + offsetof(RoleStats, wake_calls));
    r.takeovers = U64(off + offsetof(RoleStats, takeovers));
    return r;
  }

 private:
  std::vector<uint64_t> w_;
};

// A read-only mapping of the whole file, unmapped on scope exit.
struct Mapping {
  const std::byte* base = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (base != nullptr) ::munmap(const_cast<std::byte*>(base), size);
  }
};

FileClass ClassOf(const std::error_code& ec) {
  if (ec == RingErrc::kTruncated) return FileClass::kTruncated;
  if (ec == RingErrc::kNotReady) return FileClass::kIncomplete;
  if (ec == RingErrc::kBadMagic) return FileClass::kForeign;
  if (ec == RingErrc::kBadVersion) return FileClass::kOtherLayout;
  return FileClass::kCorrupt;
}

void Fail(SegmentReport& r, FileClass c, std::string why) {
  r.cls = c;
  r.problem = std::move(why);
}

bool ReadRings(SegmentReport& r, const Mapping& m, const HeaderFields& f, uint32_t ring_count) {
  const uint64_t* g = f.geometry;
  // Same rules as ValidateSpscSegment (spsc_layout.cc), on the header copy.
  auto expected_size = SpscSegmentSize(ring_count, g[1]);
  if (g[0] != ring_count || !expected_size || *expected_size != f.total_size ||
      g[2] != sizeof(SegmentHeader) || g[3] != sizeof(SpscControl) ||
      g[4] != f.total_size - ring_count * g[1]) {
    Fail(r, FileClass::kCorrupt, "inconsistent ring geometry");
    return false;
  }
  Words w(ring_count * sizeof(SpscControl));
  if (!GuardedCopy(w.data(), m.base + g[2], w.words())) {
    Fail(r, FileClass::kTruncated, "file shrank while being read");
    return false;
  }
  r.capacity = g[1];
  for (uint32_t i = 0; i < ring_count; ++i) {
    const size_t c = i * sizeof(SpscControl);
    RingReport ring;
    ring.index = i;
    ring.capacity = g[1];
    ring.write_pos = w.U64(c + offsetof(SpscControl, write_pos));
    ring.read_pos = w.U64(c + offsetof(SpscControl, read_pos));
    ring.writer_closed = w.U32(c + offsetof(SpscControl, writer_closed)) != 0;
    ring.reader_closed = w.U32(c + offsetof(SpscControl, reader_closed)) != 0;
    ring.data_waiters =
        w.U32(c + offsetof(SpscControl, data_event) + offsetof(EventCount, waiters));
    ring.space_waiters =
        w.U32(c + offsetof(SpscControl, space_event) + offsetof(EventCount, waiters));
    ring.producer = w.Role(c + offsetof(SpscControl, producer_stats));
    ring.consumer = w.Role(c + offsetof(SpscControl, consumer_stats));
    r.fill += ring.fill_bytes();
    const std::string prefix = ring_count > 1 ? "ring" + std::to_string(i) + "." : "";
    for (auto [role, off] : {std::pair{"producer", offsetof(SpscControl, producer_owner)},
                             std::pair{"consumer", offsetof(SpscControl, consumer_owner)}}) {
      const uint64_t owner = w.U64(c + off);
      if (owner == 0) continue;
      Holder h;
      h.role = prefix + role;
      h.identity = owner;
      h.lock_slot = LockSlotFor(
          r.version, r.kind,
          std::string(role) == "producer" ? HolderRole::kRingProducer : HolderRole::kRingConsumer,
          i);
      r.holders.push_back(h);
    }
    r.rings.push_back(ring);
  }
  return true;
}

// The state letter of /proc/<pid>/stat with its meaning, e.g. "T (stopped)"; or why not.
// Information for people only: it decides nothing (the pid may name another process in
// another PID namespace).
std::string ProcStateOf(uint32_t pid) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%u/stat", pid);
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return std::string("unknown (") + std::strerror(errno) + ")";
  char buf[512] = {};
  const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  const std::string line(buf, n);
  const size_t p = line.rfind(')');
  if (p == std::string::npos || p + 2 >= line.size()) return "unknown (unparsable)";
  const char c = line[p + 2];
  const char* what = c == 'R'   ? "running"
                     : c == 'S' ? "sleeping"
                     : c == 'D' ? "disk sleep"
                     : c == 'T' ? "stopped"
                     : c == 't' ? "tracing stop"
                     : c == 'Z' ? "zombie"
                     : c == 'X' ? "dead"
                                : "other";
  return std::string(1, c) + " (" + what + ")";
}

bool ReadQueue(SegmentReport& r, const Mapping& m, const HeaderFields& f) {
  const uint64_t* g = f.geometry;
  auto expected_size = MpmcSegmentSize(g[0], g[1]);
  const uint64_t control = sizeof(SegmentHeader);
  const uint64_t registry = control + sizeof(MpmcControl);
  if (!expected_size || *expected_size != f.total_size || g[2] != MpmcSlotStride(g[1]) ||
      g[3] != control || g[4] != registry || g[5] != kMpmcRegistrySize ||
      g[7] < registry + kMpmcRegistrySize * sizeof(MpmcRegistryEntry) ||
      g[7] + kMpmcRegistrySize * sizeof(MpmcHandleStats) > g[6] || g[6] > f.total_size ||
      g[7] % 128 != 0) {
    Fail(r, FileClass::kCorrupt, "inconsistent queue geometry");
    return false;
  }
  Words ctl(sizeof(MpmcControl));
  Words reg(kMpmcRegistrySize * sizeof(MpmcRegistryEntry));
  Words st(kMpmcRegistrySize * sizeof(MpmcHandleStats));
  if (!GuardedCopy(ctl.data(), m.base + control, ctl.words()) ||
      !GuardedCopy(reg.data(), m.base + registry, reg.words()) ||
      !GuardedCopy(st.data(), m.base + g[7], st.words())) {
    Fail(r, FileClass::kTruncated, "file shrank while being read");
    return false;
  }
  QueueReport q;
  q.slot_count = g[0];
  q.max_message_size = g[1];
  q.enqueue_pos = ctl.U64(offsetof(MpmcControl, enqueue_pos));
  q.dequeue_pos = ctl.U64(offsetof(MpmcControl, dequeue_pos));
  q.abandoned = ctl.U64(offsetof(MpmcControl, abandoned));
  q.redelivered = ctl.U64(offsetof(MpmcControl, redelivered));
  const auto orphans = static_cast<int64_t>(ctl.U64(offsetof(MpmcControl, orphans)));
  q.orphans = orphans > 0 ? static_cast<uint64_t>(orphans) : 0;
  q.recoveries = ctl.U64(offsetof(MpmcControl, recoveries));
  // Sleeper sets (MpmcEvent): one bit per sleeping registry entry.
  auto sleepers = [&](size_t event) {
    uint32_t n = 0;
    for (size_t w = 0; w < 5; ++w) {
      uint64_t bits = ctl.U64(event + offsetof(MpmcEvent, sleepers) + w * sizeof(uint64_t));
      if (w == 0) bits &= MpmcEvent::kLowMask;  // the rest are summary bits
      n += static_cast<uint32_t>(__builtin_popcountll(bits));
    }
    return n;
  };
  q.not_empty_waiters = sleepers(offsetof(MpmcControl, not_empty));
  q.not_full_waiters = sleepers(offsetof(MpmcControl, not_full));
  for (uint32_t i = 0; i < kMpmcRegistrySize; ++i) {
    const size_t s = i * sizeof(MpmcHandleStats);
    q.produced += st.Role(s + RoleStatsIndex(kRoleProducer) * sizeof(RoleStats));
    q.consumed += st.Role(s + RoleStatsIndex(kRoleConsumer) * sizeof(RoleStats));
    const size_t e = i * sizeof(MpmcRegistryEntry);
    const uint64_t owner = reg.U64(e + offsetof(MpmcRegistryEntry, owner));
    if (owner == 0) continue;
    const uint32_t role = reg.U32(e + offsetof(MpmcRegistryEntry, role));
    Holder h;
    h.role = "handle" + std::to_string(i) + "." +
             (role == kRoleProducer   ? "producer"
              : role == kRoleConsumer ? "consumer"
                                      : "none");
    h.identity = owner;
    h.lock_slot = LockSlotFor(r.version, r.kind, HolderRole::kQueueEntry, i);
    r.holders.push_back(h);
  }
  // Claims that hold a side back: the consumers' head slot still Claimed (an unpublished
  // producer claim: every consumer waits behind it), the producers' next slot still Reading
  // (a consumer holds the message whose slot producers need).
  const uint64_t mask = q.slot_count - 1;
  auto blocking = [&](const char* waiting, uint64_t pos, uint64_t want_state) {
    uint64_t stamp = 0;
    if (!GuardedCopy(&stamp, m.base + g[6] + (pos & mask) * g[2], 1)) return;
    if (StampState(stamp) != want_state) return;
    const uint32_t idx = StampIdx(stamp);
    if (idx >= kMpmcMaxHandles) return;  // orphaned message: waiting for a consumer
    BlockingClaim b;
    b.waiting = waiting;
    b.position = StampPos(stamp);
    b.entry = idx;
    b.identity = reg.U64(idx * sizeof(MpmcRegistryEntry) + offsetof(MpmcRegistryEntry, owner));
    b.pid = ProcessIdentity::Unpack(b.identity).pid;
    b.state = b.identity == 0 ? "no owner (stray claim)" : ProcStateOf(b.pid);
    q.blocking.push_back(b);
  };
  blocking("consumers", q.dequeue_pos, kSlotClaimed);
  blocking("producers", q.enqueue_pos, kSlotReading);
  r.capacity = q.slot_count;
  r.fill = q.fill();
  r.queue = q;
  return true;
}

bool ReadObject(SegmentReport& r, const Mapping& m, const HeaderFields& f) {
  const uint64_t* g = f.geometry;
  const uint64_t control = sizeof(SegmentHeader);
  uint64_t prod = 0, total = 0;
  // Same rules as shared_object.cc's validation, on the header copy.
  if (g[4] != control || g[0] < control + sizeof(SharedObjectControl) || g[1] == 0 || g[2] == 0 ||
      MulOverflows(g[2], g[3], &prod) || prod != g[1] || AddOverflows(g[0], g[1], &total) ||
      total != f.total_size) {
    Fail(r, FileClass::kCorrupt, "inconsistent object geometry");
    return false;
  }
  Words ctl(sizeof(SharedObjectControl));
  if (!GuardedCopy(ctl.data(), m.base + control, ctl.words())) {
    Fail(r, FileClass::kTruncated, "file shrank while being read");
    return false;
  }
  ObjectReport o;
  o.data_size = g[1];
  o.elem_size = g[2];
  o.elem_count = g[3];
  o.type_tag = g[5];
  o.owner_died_count = ctl.U64(offsetof(SharedObjectControl, owner_died_count));
  r.capacity = o.data_size;
  r.object = o;
  return true;
}

}  // namespace

const char* FileClassName(FileClass c) noexcept {
  switch (c) {
    case FileClass::kSegment:
      return "segment";
    case FileClass::kOtherLayout:
      return "other-layout";
    case FileClass::kIncomplete:
      return "incomplete";
    case FileClass::kCorrupt:
      return "corrupt";
    case FileClass::kTruncated:
      return "truncated";
    case FileClass::kForeign:
      return "foreign";
    case FileClass::kUnreadable:
      return "unreadable";
  }
  return "?";
}

void InstallSigbusGuard() {
  struct sigaction sa {};
  sa.sa_handler = OnSigbus;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGBUS, &sa, nullptr);
}

SegmentFile SegmentFile::Open(int dir_fd, const std::string& file, Mode mode) {
  const int flags = (mode == Mode::kReadWrite ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_NONBLOCK |
                    O_CLOEXEC | O_NOCTTY;
  const int fd = ::openat(dir_fd, file.c_str(), flags);
  return SegmentFile(file, fd, fd < 0 ? errno : 0);
}

SegmentFile::SegmentFile(SegmentFile&& o) noexcept
    : file_(std::move(o.file_)), fd_(std::exchange(o.fd_, -1)), error_(o.error_) {}

SegmentFile::~SegmentFile() {
  if (fd_ >= 0) ::close(fd_);
}

SegmentReport ReadReport(const SegmentFile& f, const ProcessTable& procs) {
  SegmentReport r;
  r.name = "/" + f.file();
  if (f.fd() < 0) {
    Fail(r, FileClass::kUnreadable, std::string("cannot open: ") + std::strerror(f.error()));
    return r;
  }
  struct statx sx {};
  struct stat st {};
  if (::fstat(f.fd(), &st) != 0) {
    Fail(r, FileClass::kUnreadable, std::string("fstat: ") + std::strerror(errno));
    return r;
  }
  r.file_size = static_cast<uint64_t>(st.st_size);
  r.mode = st.st_mode & 07777;
  r.uid = st.st_uid;
  r.dev = st.st_dev;
  r.ino = st.st_ino;
  r.created_unix = st.st_mtime;
  if (::statx(f.fd(), "", AT_EMPTY_PATH, STATX_BTIME, &sx) == 0 && (sx.stx_mask & STATX_BTIME)) {
    r.created_unix = sx.stx_btime.tv_sec;
  }
  if (!S_ISREG(st.st_mode)) {
    Fail(r, FileClass::kUnreadable, "not a regular file");
    return r;
  }
  // The header, copied with pread: no mapping yet (pread cannot fault).
  alignas(SegmentHeader) std::byte copy[sizeof(SegmentHeader)] = {};
  const ssize_t n = ::pread(f.fd(), copy, sizeof(copy), 0);
  if (n < 0) {
    Fail(r, FileClass::kUnreadable, std::string("read: ") + std::strerror(errno));
    return r;
  }
  uint64_t magic = 0;
  std::memcpy(&magic, copy, sizeof(magic));
  if (static_cast<size_t>(n) >= sizeof(magic) && magic != kSegmentMagic && magic != 0) {
    Fail(r, FileClass::kForeign, "not a shmlink segment");
    return r;
  }
  if (static_cast<size_t>(n) < sizeof(SegmentHeader)) {
    Fail(r, FileClass::kTruncated,
         "shorter than a segment header (" + std::to_string(n) + " bytes)");
    return r;
  }
  SegmentHeader raw;
  std::memcpy(static_cast<void*>(&raw), copy, offsetof(SegmentHeader, ready));
  r.version = raw.version;
  r.kind = raw.kind;
  r.kind_name = SegmentKindName(raw.kind);
  const bool checksum_ok = raw.magic == kSegmentMagic && raw.checksum == HeaderChecksum(copy);
  auto fields = ValidateHeader(copy, r.file_size, static_cast<SegmentKind>(raw.kind));
  bool known_kind = false;
  if (!fields) {
    Fail(r, ClassOf(fields.error()), fields.error().message());
    if (r.cls == FileClass::kOtherLayout) {
      r.problem = "layout version " + std::to_string(raw.version) + ", this tool reads " +
                  std::to_string(kLayoutVersion);
    } else if (r.cls == FileClass::kIncomplete) {
      r.problem = raw.magic == 0 ? "header not written yet (creator unknown)"
                                 : "creator has not published the header";
    }
  } else {
    r.cls = FileClass::kSegment;
    Mapping m;
    void* p = ::mmap(nullptr, r.file_size, PROT_READ, MAP_SHARED, f.fd(), 0);
    if (p == MAP_FAILED) {
      Fail(r, FileClass::kUnreadable, std::string("mmap: ") + std::strerror(errno));
      return r;
    }
    m.base = static_cast<const std::byte*>(p);
    m.size = r.file_size;
    switch (static_cast<SegmentKind>(raw.kind)) {
      case SegmentKind::kSpscRing:
        known_kind = ReadRings(r, m, *fields, 1);
        break;
      case SegmentKind::kConnection:
        known_kind = ReadRings(r, m, *fields, 2);
        break;
      case SegmentKind::kMpmcQueue:
        known_kind = ReadQueue(r, m, *fields);
        break;
      case SegmentKind::kSharedObject:
        known_kind = ReadObject(r, m, *fields);
        break;
      default:
        r.problem = "kind " + std::to_string(raw.kind) + " is not known to this tool";
        break;
    }
  }
  // The creator, when the header names one we can trust (checksum over it is right).
  if (checksum_ok && raw.creator != 0) {
    Holder h;
    h.role = "creator";
    h.identity = raw.creator;
    // Only for layouts this tool reads: another layout's slots are not known.
    if (r.cls != FileClass::kOtherLayout)
      h.lock_slot = LockSlotFor(raw.version, raw.kind, HolderRole::kCreator, 0);
    r.holders.insert(r.holders.begin(), h);
  }
  for (Holder& h : r.holders) DecideHolderState(f.fd(), procs, h);
  const bool judgeable = r.cls == FileClass::kSegment || r.cls == FileClass::kOtherLayout ||
                         (r.cls == FileClass::kIncomplete && checksum_ok);
  if (!judgeable) {
    r.verdict = r.cls == FileClass::kForeign ? "kept: not a shmlink segment" : "kept: " + r.problem;
    r.mapped_by = procs.UsersOf(r.dev, r.ino);
    return r;
  }
  r.stale = DecideStale(procs, r.dev, r.ino, r.uid, r.holders, &r.mapped_by, &r.verdict);
  if (r.stale && r.cls == FileClass::kSegment && !known_kind) {
    r.verdict += " (only its creator could be read)";
  }
  return r;
}

}  // namespace shmlink::cli
