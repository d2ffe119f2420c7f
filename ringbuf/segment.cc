// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <utility>

#include <shmlink/segment.h>

namespace shmlink {
namespace {

bool NameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

Expected<std::byte*> MapShared(int fd, size_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return ErrnoError(errno);
  return static_cast<std::byte*>(p);
}

// The error for a failed shm_open of the existing-segment name `name`: kWrongKind if the
// name is there but no regular file (glibc reports a directory as EINVAL, the kernel a
// socket as ENXIO and a symlink as ELOOP), else errno `err`.
Unexpected OpenError(const std::string& name, int err) {
  struct stat st {};
  if ((err == EINVAL || err == EISDIR || err == ENXIO || err == ELOOP) &&
      ::lstat(("/dev/shm" + name).c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    return MakeUnexpected(make_error_code(RingErrc::kWrongKind));
  }
  return ErrnoError(err);
}

// Closes `fd` after removing `name` if it is still the file of `fd`.
void UnlinkAndClose(const std::string& name, int fd) {
  (void)UnlinkShmIfSame(name, fd);
  ::close(fd);
}

}  // namespace

Expected<bool> UnlinkIfSameFile(int dir_fd, std::string_view file_name, int fd,
                                const std::function<bool()>& confirm) {
  // NUL-terminated on the stack: unlinking allocates nothing (destructors, teardown).
  char file[NAME_MAX + 1];
  if (file_name.empty()) return false;  // no such name (as fstatat would say)
  if (file_name.size() > NAME_MAX) return ErrnoError(ENAMETOOLONG);
  file_name.copy(file, file_name.size());
  file[file_name.size()] = '\0';
  struct flock lk {};
  lk.l_type = F_WRLCK;
  lk.l_whence = SEEK_SET;
  lk.l_start = kUnlinkLockOffset;
  lk.l_len = 1;
  // Held only from the check to the unlink by any unlinker: a short wait at most.
  while (::fcntl(fd, F_OFD_SETLKW, &lk) != 0) {
    if (errno != EINTR) return ErrnoError(errno);
  }
  Expected<bool> result = false;
  struct stat mine {};
  struct stat named {};
  if (::fstat(fd, &mine) != 0) {
    result = ErrnoError(errno);
  } else if (::fstatat(dir_fd, file, &named, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno != ENOENT) result = ErrnoError(errno);
  } else if (named.st_dev == mine.st_dev && named.st_ino == mine.st_ino &&
             (!confirm || confirm())) {
    if (::unlinkat(dir_fd, file, 0) == 0) {
      result = true;
    } else if (errno != ENOENT) {
      result = ErrnoError(errno);
    }
  }
  lk.l_type = F_UNLCK;
  ::fcntl(fd, F_OFD_SETLK, &lk);
  return result;
}

Expected<bool> UnlinkShmIfSame(std::string_view name, int fd) {
  if (auto ok = Segment::ValidateName(name); !ok) return MakeUnexpected(ok.error());
  const int dir = ::open("/dev/shm", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return ErrnoError(errno);
  auto r = UnlinkIfSameFile(dir, name.substr(1), fd);
  ::close(dir);
  return r;
}

Expected<void> Segment::ValidateName(std::string_view name) {
  if (name.size() < 2 || name.size() > 255 || name[0] != '/') return RingErrc::kInvalidName;
  if (name == "/." || name == "/..") return RingErrc::kInvalidName;
  for (char c : name.substr(1)) {
    if (!NameChar(c)) return RingErrc::kInvalidName;
  }
  return {};
}

Expected<Segment> Segment::Create(std::string_view name, size_t size, UnlinkPolicy policy,
                                  mode_t mode) {
  if (auto ok = ValidateName(name); !ok) return MakeUnexpected(ok.error());
  if (size == 0 || size > kMaxSize) return RingErrc::kInvalidArgument;
  std::string n(name);
  int fd = ::shm_open(n.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoError(errno);
  // shm_open applies the umask; force the requested mode.
  if (::fchmod(fd, mode) != 0 || ::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    int err = errno;
    UnlinkAndClose(n, fd);
    return ErrnoError(err);
  }
  // Reserve the pages now: ENOSPC here beats SIGBUS on first touch.
  if (int err = ::posix_fallocate(fd, 0, static_cast<off_t>(size)); err != 0) {
    UnlinkAndClose(n, fd);
    return ErrnoError(err);
  }
  auto mapped = MapShared(fd, size);
  if (!mapped) {
    UnlinkAndClose(n, fd);
    return MakeUnexpected(mapped.error());
  }
  return Segment(std::move(n), fd, *mapped, size, policy);
}

Expected<Segment> Segment::Open(std::string_view name, UnlinkPolicy policy) {
  if (auto ok = ValidateName(name); !ok) return MakeUnexpected(ok.error());
  std::string n(name);
  // O_NONBLOCK: a FIFO planted under the name must not block the open (FromFd then
  // refuses it); it is cleared again below, since the descriptor may be passed on.
  int fd = ::shm_open(n.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK, 0);
  if (fd < 0) return OpenError(n, errno);
  auto seg = FromFd(fd);
  if (!seg) return seg;
  // A regular file: back to blocking, since fd() may be passed on (SCM_RIGHTS).
  if (const int fl = ::fcntl(seg->fd_, F_GETFL);
      fl < 0 || ::fcntl(seg->fd_, F_SETFL, fl & ~O_NONBLOCK) != 0) {
    return ErrnoError(errno);
  }
  seg->name_ = std::move(n);
  seg->policy_ = policy;
  return seg;
}

Expected<Segment> Segment::CreateAnonymous(size_t size) {
  if (size == 0 || size > kMaxSize) return RingErrc::kInvalidArgument;
  int fd = ::memfd_create("shmlink", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return ErrnoError(errno);
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoError(err);
  }
  if (int err = ::posix_fallocate(fd, 0, static_cast<off_t>(size)); err != 0) {
    ::close(fd);
    return ErrnoError(err);
  }
  // A receiver can then trust that the file never shrinks under its mapping.
  if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoError(err);
  }
  return FromFd(fd);  // maps it exactly as a receiver of the fd will
}

Expected<Segment> Segment::FromFd(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoError(err);
  }
  if (!S_ISREG(st.st_mode)) {  // FIFO, directory, socket, device: not a segment
    ::close(fd);
    return RingErrc::kWrongKind;
  }
  if (st.st_size <= 0) {
    ::close(fd);
    return RingErrc::kTruncated;
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxSize) {
    ::close(fd);
    return RingErrc::kInvalidArgument;
  }
  const auto size = static_cast<size_t>(st.st_size);
  auto mapped = MapShared(fd, size);
  if (!mapped) {
    ::close(fd);
    return MakeUnexpected(mapped.error());
  }
  return Segment(std::string(), fd, *mapped, size, UnlinkPolicy::kKeep);
}

Segment::Segment(Segment&& other) noexcept
    : name_(std::move(other.name_)),
      fd_(std::exchange(other.fd_, -1)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      policy_(other.policy_),
      unlinked_(other.unlinked_) {}

Segment& Segment::operator=(Segment&& other) noexcept {
  if (this != &other) {
    Reset();
    name_ = std::move(other.name_);
    fd_ = std::exchange(other.fd_, -1);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    policy_ = other.policy_;
    unlinked_ = other.unlinked_;
  }
  return *this;
}

Segment::~Segment() { Reset(); }

void Segment::Reset() noexcept {
  if (data_ != nullptr) ::munmap(data_, size_);
  if (policy_ == UnlinkPolicy::kUnlinkOnDestroy && !unlinked_ && !name_.empty() && fd_ >= 0) {
    (void)UnlinkShmIfSame(name_, fd_);
  }
  if (fd_ >= 0) ::close(fd_);
  data_ = nullptr;
  fd_ = -1;
  size_ = 0;
  name_.clear();
}

Expected<void> Segment::Unlink() {
  if (unlinked_ || name_.empty()) return {};
  auto r = UnlinkShmIfSame(name_, fd_);
  if (!r) return MakeUnexpected(r.error());
  unlinked_ = true;
  return {};
}

}  // namespace shmlink
