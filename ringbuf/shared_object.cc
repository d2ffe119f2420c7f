// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <sys/mman.h>
#include <time.h>

#include <cerrno>
#include <limits>
#include <new>
#include <string>

#include <shmlink/holder_lock.h>
#include <shmlink/log.h>
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif
#include <shmlink/segment_header.h>
#include <shmlink/shared_object.h>

namespace shmlink {
namespace {

constexpr uint64_t kControlOffset = sizeof(SegmentHeader);
constexpr uint64_t kDataOffset = AlignUp(kControlOffset + sizeof(SharedObjectControl), 64);

struct Validated {
  uint64_t size, elem_size, type_tag, creator;
};

Expected<Validated> ValidateObject(const Segment& seg) {
  auto f = ValidateHeader(seg.data(), seg.size(), SegmentKind::kSharedObject);
  if (!f) return MakeUnexpected(f.error());
  const uint64_t* g = f->geometry;
  uint64_t prod = 0;
  uint64_t total = 0;
  if (g[0] != kDataOffset || g[1] == 0 || g[2] == 0 || g[4] != kControlOffset || g[6] != 0 ||
      g[7] != 0 || MulOverflows(g[2], g[3], &prod) || prod != g[1] ||
      AddOverflows(g[0], g[1], &total) || total != f->total_size) {
    return RingErrc::kBadGeometry;
  }
  return Validated{g[1], g[2], g[5], f->creator};
}

// Decided on one open file; unlinked only if the name still refers to it.
bool RemoveIfStale(std::string_view name) {
  auto seg = Segment::Open(name);
  // Gone since our create failed (another cleaner removed it): the name may be free now.
  if (!seg) return seg.error() == std::errc::no_such_file_or_directory;
  auto v = ValidateObject(*seg);
  // The kernel's word on the creator (its HolderLock slot); unknown is not dead. No /proc.
  if (!v || ProbeHolder(*seg, kCreatorHolderSlot) != HolderState::kDead) return false;
  auto removed = UnlinkShmIfSame(name, seg->fd());
  if (removed && *removed) {
    LogEvent(LogLevel::kInfo, "stale-removed", name, "creator is dead");
  }
  // Removed by us, or by another cleaner meanwhile: worth creating again either way (if
  // the name now names a new segment, the create fails with EEXIST, as it should).
  return true;
}

}  // namespace

Expected<SharedObject> SharedObject::Create(std::string_view name, size_t size,
                                            const CreateOptions& options) {
  if (size == 0 || options.elem_size == 0 || size % options.elem_size != 0 ||
      size > Segment::kMaxSize - kDataOffset) {
    return RingErrc::kInvalidArgument;
  }
  const uint64_t total = kDataOffset + size;
  auto seg = Segment::Create(name, total, options.unlink, options.mode);
  if (!seg && options.reclaim_stale && seg.error() == std::errc::file_exists &&
      RemoveIfStale(name)) {
    seg = Segment::Create(name, total, options.unlink, options.mode);
  }
  if (!seg) return MakeUnexpected(seg.error());
  // The creator slot, before the header is published: nobody may judge the new object stale
  // once it is visible. Out of fds: fail (the Segment's destructor unlinks the name).
  auto creator = HolderLock::Acquire(*seg, kCreatorHolderSlot);
  if (!creator) return MakeUnexpected(creator.error());
  const uint64_t geometry[8] = {kDataOffset,
                                size,
                                options.elem_size,
                                size / options.elem_size,
                                kControlOffset,
                                options.type_tag,
                                0,
                                0};
  WriteHeader(seg->data(), SegmentKind::kSharedObject, total, geometry);
  auto* c = new (seg->data() + kControlOffset) SharedObjectControl();
  pthread_mutexattr_t attr;
  int rc = pthread_mutexattr_init(&attr);
  if (rc == 0) rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  if (rc == 0) rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (rc == 0) rc = pthread_mutex_init(&c->mutex, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0) return ErrnoError(rc);
  // SYNC(ready): release inside PublishHeader; the mutex and zeroed data are visible to
  // every attacher that validated the header.
  PublishHeader(seg->data());
  LogEvent(LogLevel::kInfo, "create", name, "shared-object, %zu bytes", size);
  auto shared = std::make_shared<Segment>(std::move(*seg));
  std::byte* base = shared->data();
  return SharedObject(std::move(shared), c, base + kDataOffset, size, options.elem_size,
                      options.type_tag, std::make_shared<HolderLock>(std::move(*creator)));
}

Expected<SharedObject> SharedObject::Attach(std::string_view name) {
  auto seg = Segment::Open(name);
  if (!seg) return MakeUnexpected(seg.error());
  auto v = ValidateObject(*seg);
  if (!v) {
    if (v.error() != RingErrc::kNotReady) {
      LogEvent(LogLevel::kInfo, "corruption", name, "attach refused: %s",
               v.error().message().c_str());
    }
    return MakeUnexpected(v.error());
  }
  LogEvent(LogLevel::kInfo, "attach", name, "shared-object, %llu bytes",
           static_cast<unsigned long long>(v->size));
  auto shared = std::make_shared<Segment>(std::move(*seg));
  std::byte* base = shared->data();
  auto* c = std::launder(reinterpret_cast<SharedObjectControl*>(base + kControlOffset));
  return SharedObject(std::move(shared), c, base + kDataOffset, v->size, v->elem_size, v->type_tag);
}

Expected<SharedObject::Guard> SharedObject::Finish(int rc, LockRecovery mode) noexcept {
  if (rc == 0) return Guard(segment_, &control_->mutex, false);
  if (rc == EOWNERDEAD) {
    // Relaxed: a statistic; the mutex orders the data.
    control_->owner_died_count.fetch_add(1, std::memory_order_relaxed);
    LogEvent(LogLevel::kInfo, "peer-dead", segment_->name(),
             "the lock's previous owner died holding it");
    Guard g(segment_, &control_->mutex, true);
    if (mode == LockRecovery::kAutoRecover) {
      auto ok = g.mark_consistent();
      if (!ok) return MakeUnexpected(ok.error());
    }
    return g;
  }
  if (rc == EBUSY) return RingErrc::kWouldBlock;
  if (rc == ETIMEDOUT) return RingErrc::kTimedOut;
  return ErrnoError(rc);
}

Expected<SharedObject::Guard> SharedObject::lock(LockRecovery mode) noexcept {
  if (!segment_) return RingErrc::kBadState;  // moved from
  return Finish(pthread_mutex_lock(&control_->mutex), mode);
}

Expected<SharedObject::Guard> SharedObject::try_lock(LockRecovery mode) noexcept {
  if (!segment_) return RingErrc::kBadState;  // moved from
  return Finish(pthread_mutex_trylock(&control_->mutex), mode);
}

Expected<SharedObject::Guard> SharedObject::lock_for(std::chrono::nanoseconds timeout,
                                                     LockRecovery mode) noexcept {
  if (!segment_) return RingErrc::kBadState;  // moved from
  // CLOCK_MONOTONIC: a wall-clock step (NTP, settimeofday) must not change the wait.
  struct timespec ts {};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const int64_t ns = timeout.count() < 0 ? 0 : timeout.count();
  constexpr int64_t kNs = 1000000000;
  // Saturate: a deadline past what time_t holds waits "forever" instead of overflowing.
  const int64_t add_sec = ns / kNs;
  if (ts.tv_sec > std::numeric_limits<time_t>::max() - add_sec - 1) {
    ts.tv_sec = std::numeric_limits<time_t>::max();
    ts.tv_nsec = kNs - 1;
  } else {
    ts.tv_sec += static_cast<time_t>(add_sec);
    ts.tv_nsec += static_cast<long>(ns % kNs);
    if (ts.tv_nsec >= kNs) {
      ts.tv_sec += 1;
      ts.tv_nsec -= kNs;
    }
  }
#if defined(__SANITIZE_THREAD__)
  // TSan (GCC 12) does not intercept pthread_mutex_clocklock: tell it about the lock, or it
  // reports the later unlock as an unlock of an unlocked mutex.
  __tsan_mutex_pre_lock(&control_->mutex, __tsan_mutex_try_lock);
  const int rc = pthread_mutex_clocklock(&control_->mutex, CLOCK_MONOTONIC, &ts);
  __tsan_mutex_post_lock(&control_->mutex,
                         rc == 0 || rc == EOWNERDEAD
                             ? __tsan_mutex_try_lock
                             : __tsan_mutex_try_lock | __tsan_mutex_try_lock_failed,
                         0);
  return Finish(rc, mode);
#else
  return Finish(pthread_mutex_clocklock(&control_->mutex, CLOCK_MONOTONIC, &ts), mode);
#endif
}

uint64_t SharedObject::owner_died_count() const noexcept {
  if (control_ == nullptr) return 0;
  return control_->owner_died_count.load(std::memory_order_relaxed);  // relaxed: statistic
}

Expected<void> SharedObject::Guard::mark_consistent() noexcept {
  if (mutex_ == nullptr) return RingErrc::kBadState;
  if (consistent_) return {};
  int rc = pthread_mutex_consistent(mutex_);
  if (rc != 0) return ErrnoError(rc);
  consistent_ = true;
  return {};
}

void SharedObject::Guard::unlock() noexcept {
  if (mutex_ == nullptr) return;
  // Unlocking an inconsistent robust mutex makes it ENOTRECOVERABLE (documented).
  pthread_mutex_unlock(mutex_);
  mutex_ = nullptr;
  mapping_.reset();  // after the unlock: the mutex lives in this mapping
}

}  // namespace shmlink
