// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// SegmentReport: what the `shmlink` command knows about one file of the shm directory,
// read without trusting the file.
//
//   SegmentFile f = SegmentFile::Open(dir_fd, "feed", OpenMode::kReadOnly);
//   SegmentReport r = ReadReport(f, proc);   // never crashes on foreign/corrupt/truncated
//
// How a file is read: opened O_NOFOLLOW | O_NONBLOCK, checked to be a regular file, its
// size taken with fstat. The 256-byte header is read with pread into a copy and validated
// there (ValidateHeader). Only a valid header of a known kind and layout version leads to a
// read-only mapping of the file, and only the control blocks are copied out of it, word by
// word (atomic 64-bit loads, so a live owner word is never torn), under a SIGBUS guard: a
// file truncated by someone else after the fstat makes the copy fail (the report says
// "truncated"), it does not kill the tool. Everything shown is decoded from those copies.
//
// Thread safety: not-thread-safe (the SIGBUS guard is per thread, the handler process-wide).
#ifndef SHMLINK_CLI_SEGMENT_REPORT_H_
#define SHMLINK_CLI_SEGMENT_REPORT_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cli/holder_state.h"

#include <shmlink/role_stats.h>

namespace shmlink::cli {

// How the file was classified.
enum class FileClass {
  kSegment,      // a valid shmlink segment of a kind and layout version this tool reads
  kOtherLayout,  // a shmlink segment of another layout version (header fields only)
  kIncomplete,   // a shmlink segment whose creator has not published it (or died before)
  kCorrupt,      // shmlink magic, but a bad checksum or inconsistent geometry
  kTruncated,    // shorter than a header, or than its header says
  kForeign,      // not a shmlink segment (another program's file)
  kUnreadable,   // cannot be opened or read (permissions, not a regular file, ...)
};
const char* FileClassName(FileClass c) noexcept;

// One SPSC ring (an spsc-ring segment has one, a connection two).
struct RingReport {
  uint32_t index = 0;
  uint64_t capacity = 0;  // bytes
  uint64_t write_pos = 0, read_pos = 0;
  bool writer_closed = false, reader_closed = false;
  uint32_t data_waiters = 0, space_waiters = 0;  // sleepers announced right now
  RoleCounts producer, consumer;
  uint64_t fill_bytes() const noexcept { return write_pos >= read_pos ? write_pos - read_pos : 0; }
};

// A claim that holds one side of an MPMC queue back while its holder lives (SIGSTOP, a
// debugger, a frozen cgroup): the unpublished producer claim at the consumers' head, or a
// message a consumer holds in the slot the producers need next. Not acted on (it is alive).
struct BlockingClaim {
  std::string waiting;    // "consumers" (behind an unpublished claim) or "producers"
  uint64_t position = 0;  // stamp position of the slot
  uint32_t entry = 0;     // registry entry named by the stamp
  uint64_t identity = 0;  // that entry's owner word (0: none, a stray claim)
  uint32_t pid = 0;       // unpacked, as the holder's PID namespace numbers it
  std::string state;      // its /proc state here, e.g. "T (stopped)", or why unknown
};

struct QueueReport {
  uint64_t slot_count = 0, max_message_size = 0;
  uint64_t enqueue_pos = 0, dequeue_pos = 0;  // claim counters (hints, may lag by one)
  uint64_t abandoned = 0, redelivered = 0, orphans = 0, recoveries = 0;
  uint32_t not_empty_waiters = 0, not_full_waiters = 0;
  RoleCounts produced, consumed;        // summed over every registry entry
  std::vector<BlockingClaim> blocking;  // at most one per side
  uint64_t fill() const noexcept {
    return enqueue_pos >= dequeue_pos ? enqueue_pos - dequeue_pos : 0;
  }
};

struct ObjectReport {
  uint64_t data_size = 0, elem_size = 0, elem_count = 0, type_tag = 0;
  uint64_t owner_died_count = 0;
};

struct SegmentReport {
  std::string name;  // "/file" (the shm name)
  FileClass cls = FileClass::kUnreadable;
  std::string problem;  // why it is not kSegment (empty if it is)
  uint64_t file_size = 0;
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint64_t dev = 0, ino = 0;
  int64_t created_unix = 0;  // file birth time (statx), else its mtime
  // From the header (when it has shmlink magic).
  uint32_t version = 0;
  uint32_t kind = 0;
  std::string kind_name;
  uint64_t capacity = 0;        // bytes (rings), slots (queue), data bytes (object)
  uint64_t fill = 0;            // bytes (rings), messages (queue); 0 for objects
  std::vector<Holder> holders;  // creator first, then role holders
  std::vector<RingReport> rings;
  std::optional<QueueReport> queue;
  std::optional<ObjectReport> object;
  std::vector<int> mapped_by;  // visible processes (not us) that map it or have it open
  // Every holder dead (kernel evidence) and nobody else maps it: safe to remove.
  bool stale = false;
  std::string verdict;  // one line: why stale / in use / undecided
};

// The open file a report is made from; `clean` decides and unlinks on this same fd.
class SegmentFile {
 public:
  enum class Mode { kReadOnly, kReadWrite };
  // Opens `file` (a name in dir_fd, no '/') without following symlinks. On failure fd() < 0
  // and error() is the errno.
  static SegmentFile Open(int dir_fd, const std::string& file, Mode mode);
  SegmentFile(SegmentFile&& o) noexcept;
  SegmentFile& operator=(SegmentFile&&) = delete;
  SegmentFile(const SegmentFile&) = delete;
  ~SegmentFile();
  int fd() const noexcept { return fd_; }
  int error() const noexcept { return error_; }
  const std::string& file() const noexcept { return file_; }

 private:
  SegmentFile(std::string file, int fd, int error)
      : file_(std::move(file)), fd_(fd), error_(error) {}
  std::string file_;
  int fd_ = -1;
  int error_ = 0;
};

// Reads the report of `f` (see the file comment); holder states and the stale verdict use
// `procs` (who maps what) and DecideHolderState.
SegmentReport ReadReport(const SegmentFile& f, const ProcessTable& procs);

// Installs the process-wide SIGBUS handler the guarded copies rely on. Call once at start.
void InstallSigbusGuard();

}  // namespace shmlink::cli

#endif  // SHMLINK_CLI_SEGMENT_REPORT_H_
