// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Holder states for the `shmlink` command: alive, dead or unknown, decided in ONE place
// (DecideHolderState) so that `list`, `inspect`, `watch` and `clean` can never disagree,
// and so that switching the evidence (pid + start time today, the kernel's OFD holder
// locks once every segment kind assigns lock slots) is a change of one function.
//
// Rule: unknown is not dead. kDead is returned only on kernel evidence that the holder is
// gone: its OFD lock slot is free (HolderLock), or /proc says there is no such process, it
// is a zombie/exiting/SIGKILLed, or its pid now belongs to a process started later. Any
// read that cannot decide (EACCES, EMFILE, a /proc mounted with hidepid, ...) is kUnknown.
//
// PID namespaces: a pid + start time names a process in the writer's PID namespace. A
// holder in another namespace looks "dead" (no such pid) or "reused" to /proc. The
// process table (ProcessTable) guards against that: if any visible process other than the
// live holders maps the segment or has it open, /proc's "dead" verdicts on that segment
// are downgraded to unknown. A holder invisible to us AND whose mapping we cannot see (we
// run in a container, it on the host) is still judged by /proc alone: the remaining gap,
// closed by the OFD locks.
//
// Thread safety: not-thread-safe (ProcessTable is a snapshot built once).
#ifndef SHMLINK_CLI_HOLDER_STATE_H_
#define SHMLINK_CLI_HOLDER_STATE_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <shmlink/holder_lock.h>

namespace shmlink::cli {

// One holder recorded in a segment.
struct Holder {
  std::string role;          // "creator", "producer", "ring1.consumer", "handle3.producer"...
  uint64_t identity = 0;     // packed ProcessIdentity (pid + start time)
  uint32_t pid = 0;          // unpacked, for display
  uint64_t start_ticks = 0;  // unpacked (low bits only: see ProcessIdentity::Pack)
  // The HolderLock slot this holder keeps locked, when the segment's kind assigns one.
  std::optional<uint64_t> lock_slot;
  HolderState state = HolderState::kUnknown;
  std::string why;  // the evidence, e.g. "no process 1234", "cannot read /proc/1234: EACCES"
};

// Which visible processes map or hold open which files (by st_dev/st_ino), from one scan of
// /proc/<pid>/maps and /proc/<pid>/fd. Processes of the file's owner whose fd tables could not
// be read are remembered: a segment of that owner cannot then be proven unused.
class ProcessTable {
 public:
  // Scans /proc (skipping the calling process). Cost: one read of each process's maps and a
  // stat of each of its fds.
  static ProcessTable Scan();
  // An empty table (nothing maps anything; nothing unreadable). For tests.
  ProcessTable() = default;

  // Pids of visible processes that map or have open the file (dev, ino).
  std::vector<int> UsersOf(uint64_t dev, uint64_t ino) const;
  // Pids of processes of `uid` whose fd table could not be read.
  std::vector<int> UnreadableOf(uint32_t uid) const;
  // True if /proc hides other users' processes from us (hidepid) and we are not root.
  bool hidepid() const noexcept { return hidepid_; }

 private:
  std::map<std::pair<uint64_t, uint64_t>, std::set<int>> users_;
  std::map<uint32_t, std::vector<int>> unreadable_;
  bool hidepid_ = false;
};

// The first layout version whose holders keep HolderLock slots: 4, where SPSC rings and
// connections hold their roles and their creator as locks, MPMC queues their registry
// entries and creator, shared objects their creator. Topics are not listed yet
// (LockSlotFor says nullopt for them: /proc decides). MERGE NOTE: a kind that starts
// holding locks adds its case to LockSlotFor (and, if that needs a newer layout, compares
// the version there).
inline constexpr uint32_t kFirstHolderLockLayout = 4;

// What a holder is, for LockSlotFor: the creator, a ring role, or an MPMC registry entry.
enum class HolderRole { kCreator, kRingProducer, kRingConsumer, kQueueEntry };

// The HolderLock slot of a holder in a segment of kind `kind` (SegmentKind value) and
// layout `version`, or nullopt when that segment's holders keep no lock (then /proc
// decides). SPSC slots (spsc_layout.h): ring i's producer 2i, consumer 2i + 1; the creator
// kCreatorHolderSlot (holder_lock.h).
std::optional<uint64_t> LockSlotFor(uint32_t version, uint32_t kind, HolderRole role,
                                    uint32_t index);

// THE holder-state decision (see the file comment). `segment_fd`: an open fd of the
// segment's file (for the OFD lock probe when h.lock_slot is set). Sets h.state and h.why.
void DecideHolderState(int segment_fd, const ProcessTable& procs, Holder& h);

// Segment-level verdict once every holder is decided: stale iff every holder is kDead and
// no visible process other than ourselves maps or holds the file, and no process of the
// owner was unreadable. Downgrades /proc-based kDead holders to kUnknown when an
// unexplained process maps the file (see the file comment). Returns the verdict line.
bool DecideStale(const ProcessTable& procs, uint64_t dev, uint64_t ino, uint32_t owner_uid,
                 std::vector<Holder>& holders, std::vector<int>* mapped_by, std::string* verdict);

}  // namespace shmlink::cli

#endif  // SHMLINK_CLI_HOLDER_STATE_H_
