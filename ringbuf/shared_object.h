// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// SharedObject: a named shared-memory region holding plain bytes (a trivially-copyable T
// or an array of T) guarded by a process-shared ROBUST mutex. It backs Python's
// Value/Array + Lock.
//
//   auto obj = SharedValue<Counter>::Create("/stats", Counter{});  // or Attach("/stats")
//   {
//     auto g = obj->lock();            // Expected<SharedObject::Guard>
//     if (g->owner_died()) { repair(obj->get()); g->mark_consistent(); }
//     obj->get()->hits++;
//   }                                  // unlocked here
//
// Layout (segment kind kSharedObject):
//   0     SegmentHeader  geometry[] = {data_offset, data_size, elem_size, elem_count,
//                                      lock_offset, type_tag, 0, 0}
//   256   SharedObjectControl (128 B): pthread_mutex_t (PTHREAD_PROCESS_SHARED |
//                                      PTHREAD_MUTEX_ROBUST), owner-died counter
//   384   data (data_size bytes, 64-byte aligned), zero-filled at creation
//
// CRASH SEMANTICS: if a process dies holding the lock, the kernel's robust-futex list
// hands the lock to the next locker with EOWNERDEAD: lock() succeeds and the Guard says
// owner_died(). The data may be half-updated; the caller repairs it and calls
// mark_consistent(). If the guard is released WITHOUT mark_consistent(), POSIX makes the
// lock permanently unusable: every later lock() fails with ENOTRECOVERABLE (system
// category) instead of blocking. Nobody deadlocks either way. lock(kAutoRecover) marks
// consistent at once (for data that needs no repair, e.g. Python's Value/Array), still
// reporting owner_died().
//
// Trust boundary: the mutex lives in shared memory; a process with write access can damage
// it (then lock() may misbehave). The header and geometry are validated on Attach.
//
// Thread safety: any-thread (the lock is the synchronisation). data()/get() give raw
// access: hold the lock for any access that must be consistent.
#ifndef SHMLINK_RINGBUF_SHARED_OBJECT_H_
#define SHMLINK_RINGBUF_SHARED_OBJECT_H_

#include <pthread.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>

#include <shmlink/expected.h>
#include <shmlink/holder_lock.h>
#include <shmlink/ring_error.h>
#include <shmlink/segment.h>

namespace shmlink {

struct SharedObjectControl {
  alignas(64) pthread_mutex_t mutex;
  alignas(64) std::atomic<uint64_t> owner_died_count{0};  // times EOWNERDEAD was reported
};
static_assert(sizeof(SharedObjectControl) == 128);

enum class LockRecovery {
  kReport,       // owner_died() is reported; the caller must mark_consistent()
  kAutoRecover,  // marks the lock consistent immediately; owner_died() still reported
};

class SharedObject {
 public:
  struct CreateOptions {
    UnlinkPolicy unlink = UnlinkPolicy::kUnlinkOnDestroy;
    mode_t mode = 0600;
    // Element size: data_size must be a multiple of it (1 for raw bytes).
    uint64_t elem_size = 1;
    // Free-form tag stored in the header (e.g. a Python typecode), checked by typed attach.
    uint64_t type_tag = 0;
    // If the name exists and its creator is dead, replace it. Off by default: attachers
    // are not registered, so a dead creator does not mean nobody uses the object. "Dead" is
    // the kernel's word: the creator's SharedObject holds HolderLock kCreatorHolderSlot
    // for as long as it (or a copy) lives; a creator whose state cannot be probed is alive.
    bool reclaim_stale = false;
  };

  // Holds the lock; unlocks when destroyed. Keeps the mapping alive while it holds the lock
  // (a Guard may outlive the SharedObject it came from). Move-only. not-thread-safe (one
  // owner).
  class Guard {
   public:
    Guard(Guard&& o) noexcept
        : mapping_(std::move(o.mapping_)),
          mutex_(std::exchange(o.mutex_, nullptr)),
          owner_died_(o.owner_died_),
          consistent_(o.consistent_) {}
    Guard& operator=(Guard&& o) noexcept {
      if (this != &o) {
        unlock();
        mapping_ = std::move(o.mapping_);
        mutex_ = std::exchange(o.mutex_, nullptr);
        owner_died_ = o.owner_died_;
        consistent_ = o.consistent_;
      }
      return *this;
    }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    ~Guard() { unlock(); }

    // True if the previous holder died while holding the lock (EOWNERDEAD).
    bool owner_died() const noexcept { return owner_died_; }
    // Declares the protected data repaired. Errors: errno of pthread_mutex_consistent.
    [[nodiscard]] Expected<void> mark_consistent() noexcept;
    // Unlocks now (idempotent).
    void unlock() noexcept;
    bool owns_lock() const noexcept { return mutex_ != nullptr; }

   private:
    friend class SharedObject;
    Guard(std::shared_ptr<const Segment> mapping, pthread_mutex_t* m, bool died)
        : mapping_(std::move(mapping)), mutex_(m), owner_died_(died), consistent_(!died) {}
    std::shared_ptr<const Segment> mapping_;  // the mapping that holds *mutex_
    pthread_mutex_t* mutex_ = nullptr;
    bool owner_died_ = false;
    bool consistent_ = true;
  };

  // Creates object `name` (exclusive) of `size` bytes. Errors: those of Segment::Create,
  // kInvalidArgument (size 0, size not a multiple of elem_size), errno of pthread_*_init.
  [[nodiscard]] static Expected<SharedObject> Create(std::string_view name, size_t size,
                                                     const CreateOptions& options);
  [[nodiscard]] static Expected<SharedObject> Create(std::string_view name, size_t size) {
    return Create(name, size, CreateOptions{});
  }
  // Attaches to an existing object. Errors: those of Segment::Open, kWrongKind,
  // kBadGeometry, and the header's errors.
  [[nodiscard]] static Expected<SharedObject> Attach(std::string_view name);

  // A moved-from SharedObject maps nothing of its own: lock/try_lock/lock_for fail with
  // kBadState.
  // Blocks until the lock is held. Errors: ENOTRECOVERABLE (a previous owner died and the
  // data was never marked consistent), EDEADLK, other pthread errno values.
  [[nodiscard]] Expected<Guard> lock(LockRecovery mode = LockRecovery::kReport) noexcept;
  // Non-blocking: kWouldBlock if another thread/process holds it.
  [[nodiscard]] Expected<Guard> try_lock(LockRecovery mode = LockRecovery::kReport) noexcept;
  // Waits at most `timeout` (measured on CLOCK_MONOTONIC: a wall-clock step does not shorten
  // or stretch it; <= 0: one try; huge values saturate): kTimedOut after it.
  [[nodiscard]] Expected<Guard> lock_for(std::chrono::nanoseconds timeout,
                                         LockRecovery mode = LockRecovery::kReport) noexcept;

  std::byte* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  uint64_t elem_size() const noexcept { return elem_size_; }
  uint64_t count() const noexcept { return size_ / elem_size_; }
  uint64_t type_tag() const noexcept { return type_tag_; }
  // Number of times a locker was told the previous owner died. snapshot.
  uint64_t owner_died_count() const noexcept;
  const Segment& segment() const noexcept { return *segment_; }
  [[nodiscard]] Expected<void> Unlink() const { return segment_->Unlink(); }

 private:
  SharedObject(std::shared_ptr<Segment> seg, SharedObjectControl* c, std::byte* data, size_t size,
               uint64_t elem, uint64_t tag, std::shared_ptr<HolderLock> creator = nullptr)
      : segment_(std::move(seg)),
        creator_lock_(std::move(creator)),
        control_(c),
        data_(data),
        size_(size),
        elem_size_(elem),
        type_tag_(tag) {}
  Expected<Guard> Finish(int rc, LockRecovery mode) noexcept;

  std::shared_ptr<Segment> segment_;
  // HolderLock kCreatorHolderSlot, in the creating process only: for stale-name removal.
  std::shared_ptr<HolderLock> creator_lock_;
  SharedObjectControl* control_ = nullptr;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
  uint64_t elem_size_ = 1;
  uint64_t type_tag_ = 0;
};

namespace internal {
// What the typed views below share: the SharedObject they wrap and its lock.
class TypedSharedObject {
 public:
  // As SharedObject::lock.
  [[nodiscard]] Expected<SharedObject::Guard> lock(
      LockRecovery mode = LockRecovery::kReport) noexcept {
    return obj_.lock(mode);
  }
  // The untyped object (try_lock, lock_for, segment, Unlink, ...).
  SharedObject& object() noexcept { return obj_; }

 protected:
  explicit TypedSharedObject(SharedObject obj) : obj_(std::move(obj)) {}
  const SharedObject& untyped() const noexcept { return obj_; }

 private:
  SharedObject obj_;
};
}  // namespace internal

// Typed view: one T. Attach fails with kBadGeometry if the stored element size or count
// does not match T.
template <typename T>
class SharedValue : public internal::TypedSharedObject {
  static_assert(std::is_trivially_copyable_v<T>, "SharedValue needs a trivially copyable T");

 public:
  [[nodiscard]] static Expected<SharedValue> Create(std::string_view name, const T& init = T{},
                                                    SharedObject::CreateOptions o = {}) {
    o.elem_size = sizeof(T);
    auto obj = SharedObject::Create(name, sizeof(T), o);
    if (!obj) return MakeUnexpected(obj.error());
    std::memcpy(obj->data(), &init, sizeof(T));
    return SharedValue(std::move(*obj));
  }
  [[nodiscard]] static Expected<SharedValue> Attach(std::string_view name) {
    auto obj = SharedObject::Attach(name);
    if (!obj) return MakeUnexpected(obj.error());
    if (obj->elem_size() != sizeof(T) || obj->size() != sizeof(T)) return RingErrc::kBadGeometry;
    return SharedValue(std::move(*obj));
  }
  T* get() const noexcept { return reinterpret_cast<T*>(untyped().data()); }

 private:
  explicit SharedValue(SharedObject obj) : TypedSharedObject(std::move(obj)) {}
};

// Typed view: an array of `count` T.
template <typename T>
class SharedArray : public internal::TypedSharedObject {
  static_assert(std::is_trivially_copyable_v<T>, "SharedArray needs a trivially copyable T");

 public:
  [[nodiscard]] static Expected<SharedArray> Create(std::string_view name, size_t count,
                                                    SharedObject::CreateOptions o = {}) {
    if (count == 0 || count > (Segment::kMaxSize / sizeof(T))) return RingErrc::kInvalidArgument;
    o.elem_size = sizeof(T);
    auto obj = SharedObject::Create(name, count * sizeof(T), o);
    if (!obj) return MakeUnexpected(obj.error());
    return SharedArray(std::move(*obj));
  }
  [[nodiscard]] static Expected<SharedArray> Attach(std::string_view name) {
    auto obj = SharedObject::Attach(name);
    if (!obj) return MakeUnexpected(obj.error());
    if (obj->elem_size() != sizeof(T)) return RingErrc::kBadGeometry;
    return SharedArray(std::move(*obj));
  }
  std::span<T> span() const noexcept { return {reinterpret_cast<T*>(untyped().data()), size()}; }
  size_t size() const noexcept { return untyped().size() / sizeof(T); }

 private:
  explicit SharedArray(SharedObject obj) : TypedSharedObject(std::move(obj)) {}
};

}  // namespace shmlink

#endif  // SHMLINK_RINGBUF_SHARED_OBJECT_H_
