// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Segment: RAII owner of one POSIX shared-memory mapping (shm_open + mmap).
//
//   auto seg = Segment::Create("/my-ring", 1 << 20, UnlinkPolicy::kUnlinkOnDestroy);
//   if (!seg) { std::cerr << seg.error().message(); }
//
// Names follow POSIX shm rules, stricter: a leading '/', then 1..254 characters of
// [A-Za-z0-9._-] (no further '/'). Create() is exclusive (O_CREAT|O_EXCL, mode 0600 by
// default) and reserves the memory with posix_fallocate, so a full /dev/shm is an ENOSPC
// error at creation instead of a SIGBUS later. Open() attaches to an existing segment and
// maps its whole current size; it does not interpret the contents (see segment_header.h).
//
// Unlink policy is explicit: kUnlinkOnDestroy removes the name when this object is
// destroyed (the creator owns the name), kKeep leaves it (attachers, long-lived names).
// Unlink() removes the name at once; existing mappings stay valid.
//
// Thread safety: not-thread-safe (one owner); the mapped memory is shared by design.
// Trust boundary: any process of a uid allowed by the file mode can map the segment. A
// peer that ftruncate()s a shared segment below its mapped size makes later accesses fault
// (SIGBUS); segments passed by file descriptor (FromFd) can be sealed against that.
#ifndef SHMLINK_RINGBUF_SEGMENT_H_
#define SHMLINK_RINGBUF_SEGMENT_H_

#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include <shmlink/expected.h>
#include <shmlink/ring_error.h>

namespace shmlink {

enum class UnlinkPolicy {
  kKeep,             // Leave the name in /dev/shm when this Segment is destroyed.
  kUnlinkOnDestroy,  // shm_unlink the name when this Segment is destroyed.
};

// Removes `file_name` from the directory `dir_fd` only if that name still refers to the
// file open as `fd` (same st_dev/st_ino), so that a segment re-created under the same name
// in the meantime is never removed. Race-free against every other shmlink unlinker: each
// takes an exclusive OFD lock on one byte far past the end of the file it is about to
// unlink (kUnlinkLockOffset; no other lock uses it) and holds it from the check to the
// unlink, so nobody can unlink-and-recreate the name between the two. A process that
// removes the file by other means (rm) is not covered. `fd` must be open for writing (the
// lock is a write lock). Returns true if removed, false if the name was absent or names
// another file. `confirm`, if given, is called under the lock after the identity check and
// may veto the unlink (returns false: nothing removed), e.g. to re-check that every holder
// is still dead. Errors: errno of fcntl/fstat/unlinkat.
inline constexpr off_t kUnlinkLockOffset = off_t{1} << 62;
[[nodiscard]] Expected<bool> UnlinkIfSameFile(int dir_fd, std::string_view file_name, int fd,
                                              const std::function<bool()>& confirm = {});
// The same for a POSIX shm name ("/name", in /dev/shm).
[[nodiscard]] Expected<bool> UnlinkShmIfSame(std::string_view name, int fd);

class Segment {
 public:
  // Largest segment Create() accepts (and Open() maps): 64 GiB.
  static constexpr size_t kMaxSize = size_t{64} << 30;

  // Returns kInvalidName unless `name` is a valid shmlink shm name (see file comment).
  [[nodiscard]] static Expected<void> ValidateName(std::string_view name);

  // Creates a new segment of `size` bytes (zero-filled). Errors: kInvalidName,
  // kInvalidArgument (size 0 or > kMaxSize), EEXIST (system category) if the name
  // exists, ENOSPC if /dev/shm cannot hold it, other errno values from shm_open/mmap.
  [[nodiscard]] static Expected<Segment> Create(std::string_view name, size_t size,
                                                UnlinkPolicy policy, mode_t mode = 0600);

  // Attaches to an existing segment read-write and maps all of it. Errors: kInvalidName,
  // ENOENT if absent, EACCES, kWrongKind if the name is not a regular file (a FIFO, which
  // is never waited on, a directory, a socket, a symlink), kTruncated if it is empty,
  // kInvalidArgument if > kMaxSize.
  [[nodiscard]] static Expected<Segment> Open(std::string_view name,
                                              UnlinkPolicy policy = UnlinkPolicy::kKeep);

  // Creates an anonymous segment (memfd) of `size` bytes, sealed against shrinking, to be
  // passed to a peer by file descriptor (SCM_RIGHTS). name() is empty.
  [[nodiscard]] static Expected<Segment> CreateAnonymous(size_t size);

  // Maps the file behind `fd` (takes ownership of fd, closes it on error too). Errors as
  // Open()'s: kWrongKind unless it is a regular file, kTruncated if empty, ...
  [[nodiscard]] static Expected<Segment> FromFd(int fd);

  Segment() = default;
  Segment(Segment&& other) noexcept;
  Segment& operator=(Segment&& other) noexcept;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  ~Segment();

  // Removes the name now (idempotent) if it still refers to this segment's file (see
  // UnlinkShmIfSame: a segment re-created under the name since is left alone). The
  // mapping stays valid.
  [[nodiscard]] Expected<void> Unlink();

  std::byte* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  const std::string& name() const noexcept { return name_; }
  // The open file descriptor (valid while the Segment lives), e.g. for SCM_RIGHTS.
  int fd() const noexcept { return fd_; }
  bool valid() const noexcept { return data_ != nullptr; }

 private:
  Segment(std::string name, int fd, std::byte* data, size_t size, UnlinkPolicy policy)
      : name_(std::move(name)), fd_(fd), data_(data), size_(size), policy_(policy) {}
  void Reset() noexcept;

  std::string name_;
  int fd_ = -1;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
  UnlinkPolicy policy_ = UnlinkPolicy::kKeep;
  bool unlinked_ = false;
};

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_SEGMENT_H_
