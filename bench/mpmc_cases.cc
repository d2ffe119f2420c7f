// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// RunMpmcCases: throughput of shmlink's MpmcQueue ("shmlink-mpmc") against a baseline
// "mutex-queue" (a ring of slots in shared memory guarded by one process-shared
// pthread_mutex with two process-shared condition variables: the textbook design of
// Boost.Interprocess message_queue and of Python's multiprocessing.Queue's internals),
// for 1->1, 2->2 and 4->4 processes, at each size of cfg.sizes up to 64 KiB (64 B and
// 4 KiB with the defaults). Both systems copy each message in and out (push/pop), use the
// same slot count and message sizes, and the same process layout: producers pinned to
// cfg.cpu_a, consumers to cfg.cpu_b. Throughput = messages consumed per second, measured
// after a warm-up, the median of cfg.reps runs (min/max in *_min/*_max).
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_record.h"
#include "bench/cases.h"

#include <shmlink/mpmc_queue.h>

namespace shmlink::bench {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr uint64_t kMaxMpmcSize = 64 * 1024;
constexpr int kMaxProcs = 8;

// Control block shared with the forked workers (anonymous shared mapping).
struct Control {
  std::atomic<int> ready{0};
  std::atomic<int> start{0};
  std::atomic<int> stop{0};
  std::atomic<int> failed{0};
  struct alignas(128) Counter {
    std::atomic<uint64_t> n{0};
  };
  Counter consumed[kMaxProcs];
};

uint64_t SlotsFor(uint64_t size) { return size <= 256 ? 1024 : 256; }

// The systems of this family. kMpmc uses the default WaitOptions (spin 50 us, then
// sleep); kMpmcSleep sleeps at once when empty/full (WaitStrategy::kSleep), which lets one
// side run ahead and the other take batches.
enum class Sys { kMpmc, kMpmcSleep, kMutex };

const char* SysName(Sys s) {
  switch (s) {
    case Sys::kMpmc:
      return "shmlink-mpmc";
    case Sys::kMpmcSleep:
      return "shmlink-mpmc:sleep";
    case Sys::kMutex:
      return "mutex-queue";
  }
  return "?";
}

// SHMLINK_MPMC_SYS=mpmc|mpmc-sleep|mutex (comma-separated list),
// SHMLINK_MPMC_PROCS=1|2|4 and SHMLINK_MPMC_SIZE=<bytes> restrict the run (for
// experiments; unset: everything).
bool Selected(Sys s, int procs, uint64_t size) {
  if (const char* only = std::getenv("SHMLINK_MPMC_PROCS"); only && std::atoi(only) != procs) {
    return false;
  }
  if (const char* only = std::getenv("SHMLINK_MPMC_SIZE");
      only && std::strtoull(only, nullptr, 10) != size) {
    return false;
  }
  const char* sys = std::getenv("SHMLINK_MPMC_SYS");
  if (sys == nullptr) return true;
  const char* key = s == Sys::kMpmc ? "mpmc" : s == Sys::kMpmcSleep ? "mpmc-sleep" : "mutex";
  const std::string list = std::string(",") + sys + ",";
  return list.find(std::string(",") + key + ",") != std::string::npos;
}

// ------------------------------------------------------------ mutex-queue baseline

struct MutexQueue {
  pthread_mutex_t mutex;
  pthread_cond_t not_empty;
  pthread_cond_t not_full;
  uint64_t head;  // next to pop
  uint64_t tail;  // next to push
  uint64_t slots;
  uint64_t stride;
  // slots follow: [u64 length][payload]
  std::byte* slot(uint64_t pos) {
    return reinterpret_cast<std::byte*>(this + 1) + (pos % slots) * stride;
  }
};

MutexQueue* CreateMutexQueue(uint64_t slots, uint64_t max_size, size_t* bytes) {
  const uint64_t stride = (8 + max_size + 63) & ~uint64_t{63};
  *bytes = sizeof(MutexQueue) + slots * stride;
  void* p = ::mmap(nullptr, *bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  auto* q = new (p) MutexQueue();
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
  pthread_mutex_init(&q->mutex, &ma);
  pthread_mutexattr_destroy(&ma);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&q->not_empty, &ca);
  pthread_cond_init(&q->not_full, &ca);
  pthread_condattr_destroy(&ca);
  q->slots = slots;
  q->stride = stride;
  return q;
}

timespec Deadline(std::chrono::milliseconds d) {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_nsec += static_cast<long>(d.count() * 1000000);
  ts.tv_sec += ts.tv_nsec / 1000000000;
  ts.tv_nsec %= 1000000000;
  return ts;
}

// Returns false on timeout (10 ms) so the caller can check the stop flag.
bool MutexPush(MutexQueue* q, const std::byte* msg, uint64_t n) {
  pthread_mutex_lock(&q->mutex);
  while (q->tail - q->head == q->slots) {
    timespec ts = Deadline(10ms);
    if (pthread_cond_timedwait(&q->not_full, &q->mutex, &ts) == ETIMEDOUT) {
      pthread_mutex_unlock(&q->mutex);
      return false;
    }
  }
  std::byte* s = q->slot(q->tail);
  std::memcpy(s, &n, 8);
  std::memcpy(s + 8, msg, n);
  q->tail++;
  pthread_cond_signal(&q->not_empty);
  pthread_mutex_unlock(&q->mutex);
  return true;
}

bool MutexPop(MutexQueue* q, std::byte* out) {
  pthread_mutex_lock(&q->mutex);
  while (q->tail == q->head) {
    timespec ts = Deadline(10ms);
    if (pthread_cond_timedwait(&q->not_empty, &q->mutex, &ts) == ETIMEDOUT) {
      pthread_mutex_unlock(&q->mutex);
      return false;
    }
  }
  std::byte* s = q->slot(q->head);
  uint64_t n = 0;
  std::memcpy(&n, s, 8);
  std::memcpy(out, s + 8, n);
  q->head++;
  pthread_cond_signal(&q->not_full);
  pthread_mutex_unlock(&q->mutex);
  return true;
}

// ------------------------------------------------------------ workers

struct Case {
  bool mpmc = true;
  WaitOptions wait;  // shmlink workers
  int producers = 1;
  int consumers = 1;
  uint64_t size = 64;
  std::string name;  // shm name (mpmc)
  MutexQueue* mq = nullptr;
};

void WaitStart(Control* c) {
  c->ready.fetch_add(1);
  while (c->start.load(std::memory_order_acquire) == 0) std::this_thread::yield();
}

int ProducerMain(const Case& k, Control* c, int id) {
  std::vector<std::byte> msg(k.size, std::byte{0x5a});
  if (k.mpmc) {
    auto q = MpmcQueue::Attach(k.name);
    if (!q) return 2;
    auto tx = q->Producer();
    if (!tx) return 3;
    WaitStart(c);
    for (uint64_t seq = 0; c->stop.load(std::memory_order_relaxed) == 0; ++seq) {
      std::memcpy(msg.data(), &seq, 8);
      auto r = tx->push(msg, k.wait);
      if (!r && r.error() != RingErrc::kTimedOut) return 4;
    }
    return 0;
  }
  WaitStart(c);
  for (uint64_t seq = 0; c->stop.load(std::memory_order_relaxed) == 0; ++seq) {
    std::memcpy(msg.data(), &seq, 8);
    MutexPush(k.mq, msg.data(), msg.size());
  }
  (void)id;
  return 0;
}

int ConsumerMain(const Case& k, Control* c, int id) {
  std::vector<std::byte> buf(k.size);
  uint64_t n = 0;
  auto& counter = c->consumed[id].n;
  if (k.mpmc) {
    auto q = MpmcQueue::Attach(k.name);
    if (!q) return 2;
    auto rx = q->Consumer();
    if (!rx) return 3;
    WaitStart(c);
    for (;;) {
      auto r = rx->pop(buf, k.wait);
      if (r) {
        // Relaxed: a progress counter read by the parent; only this process writes it.
        counter.store(++n, std::memory_order_relaxed);
      } else if (r.error() == RingErrc::kTimedOut) {
        if (c->stop.load() != 0) return 0;
      } else {
        return 4;
      }
    }
  }
  WaitStart(c);
  for (;;) {
    if (MutexPop(k.mq, buf.data())) {
      counter.store(++n, std::memory_order_relaxed);
    } else if (c->stop.load() != 0) {
      return 0;
    }
  }
}

uint64_t Consumed(Control* c, int consumers) {
  uint64_t s = 0;
  for (int i = 0; i < consumers; ++i) s += c->consumed[i].n.load(std::memory_order_relaxed);
  return s;
}

struct Result {
  double rate = -1;      // msgs/s, negative on failure
  double cpu_share = 0;  // CPU seconds the workers used per second of the run
};

// One repetition.
Result RunOnce(const BenchConfig& cfg, Case k) {
  static std::atomic<int> serial{0};
  std::optional<MpmcQueue> queue;
  size_t mq_bytes = 0;
  if (k.mpmc) {
    k.name = "/shmlink-bench-mpmc-" + std::to_string(::getpid()) + "-" +
             std::to_string(serial.fetch_add(1));
    auto q = MpmcQueue::Create(k.name, SlotsFor(k.size), k.size);
    if (!q) return Result{};
    queue.emplace(std::move(*q));
  } else {
    k.mq = CreateMutexQueue(SlotsFor(k.size), k.size, &mq_bytes);
    if (k.mq == nullptr) return Result{};
  }
  void* mem =
      ::mmap(nullptr, sizeof(Control), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return Result{};
  auto* c = new (mem) Control();
  std::vector<pid_t> kids;
  for (int i = 0; i < k.consumers + k.producers; ++i) {
    const bool producer = i >= k.consumers;
    pid_t pid = ::fork();
    if (pid == 0) {
      PinToCpu(producer ? cfg.cpu_a : cfg.cpu_b);
      int rc = producer ? ProducerMain(k, c, i - k.consumers) : ConsumerMain(k, c, i);
      ::_exit(rc);
    }
    kids.push_back(pid);
  }
  const auto setup_deadline = Clock::now() + 10s;
  while (c->ready.load() < k.consumers + k.producers && Clock::now() < setup_deadline) {
    std::this_thread::sleep_for(1ms);
  }
  // Every worker has attached: drop the name now, so that nothing is left in /dev/shm even
  // if this process is killed mid-run.
  if (queue) (void)queue->Unlink();
  double rate = -1;
  const auto started = Clock::now();
  if (c->ready.load() == k.consumers + k.producers) {
    c->start.store(1, std::memory_order_release);
    const double warm = std::min(0.1, cfg.seconds_per_rep / 5);
    std::this_thread::sleep_for(std::chrono::duration<double>(warm));
    const uint64_t c0 = Consumed(c, k.consumers);
    const auto t0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(cfg.seconds_per_rep));
    const uint64_t c1 = Consumed(c, k.consumers);
    const auto t1 = Clock::now();
    rate = static_cast<double>(c1 - c0) / std::chrono::duration<double>(t1 - t0).count();
  }
  c->stop.store(1);
  const double ran = std::chrono::duration<double>(Clock::now() - started).count();
  bool ok = true;
  double cpu = 0;
  for (pid_t pid : kids) {
    int status = 0;
    rusage ru{};
    const auto end = Clock::now() + 10s;
    while (::wait4(pid, &status, WNOHANG, &ru) == 0) {
      if (Clock::now() > end) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(1ms);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ok = false;
    cpu += static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
  }
  ::munmap(mem, sizeof(Control));
  if (k.mq != nullptr) ::munmap(k.mq, mq_bytes);
  // Includes the workers' wind-down after `stop` (< 10 ms each): roughly CPUs used.
  return Result{ok ? rate : -1, ran > 0 ? cpu / ran : 0};
}

}  // namespace

void RunMpmcCases(const BenchConfig& cfg, const Emit& emit) {
  const int reps = cfg.quick ? 1 : std::max(1, cfg.reps);
  BenchConfig run = cfg;
  if (cfg.quick) run.seconds_per_rep = std::min(cfg.seconds_per_rep, 0.2);
  for (uint64_t size : cfg.sizes) {
    if (size < 8 || size > kMaxMpmcSize) continue;  // each message carries an 8-byte seq
    for (int procs : {1, 2, 4}) {
      for (Sys sys : {Sys::kMpmc, Sys::kMpmcSleep, Sys::kMutex}) {
        if (!Selected(sys, procs, size)) continue;
        const bool mpmc = sys != Sys::kMutex;
        Case k;
        k.mpmc = mpmc;
        k.producers = procs;
        k.consumers = procs;
        k.size = size;
        // Timeouts only so that workers notice the stop flag.
        k.wait = sys == Sys::kMpmcSleep ? WaitOptions::Sleep(std::chrono::milliseconds(10))
                                        : WaitOptions::WithTimeout(std::chrono::milliseconds(10));
        BenchRecord r;
        r.system = SysName(sys);
        r.pattern = "throughput";
        r.size = size;
        r.producers = procs;
        r.consumers = procs;
        std::vector<double> rates, cpus;
        for (int i = 0; i < reps; ++i) {
          const Result res = RunOnce(run, k);
          if (res.rate <= 0) {
            r.error = "a run failed (worker error or no progress)";
            break;
          }
          rates.push_back(res.rate);
          cpus.push_back(res.cpu_share);
        }
        if (r.error.empty()) {
          const double med = Median(rates);
          r.msgs_per_s = med;
          r.bytes_per_s = med * static_cast<double>(size);
          r.reps = reps;
          r.extra["msgs_per_s_min"] = *std::min_element(rates.begin(), rates.end());
          r.extra["msgs_per_s_max"] = *std::max_element(rates.begin(), rates.end());
          // CPUs the workers got (of 2 on the bench VM): a loaded machine's scheduler
          // decides the result as much as the queue does.
          r.extra["worker_cpus"] = Median(cpus);
          r.note = "processes; producers on cpu " + std::to_string(cfg.cpu_a) +
                   ", consumers on cpu " + std::to_string(cfg.cpu_b) + "; " +
                   std::to_string(SlotsFor(size)) + " slots; copying push/pop" +
                   (sys == Sys::kMpmc        ? "; WaitOptions default (spin 50 us, then futex)"
                    : sys == Sys::kMpmcSleep ? "; WaitStrategy::kSleep (futex at once)"
                                             : "");
        }
        emit(r);
      }
    }
  }
}

void RunMpmcPairCases(const BenchConfig& cfg, const Emit& emit) {
  setenv("SHMLINK_MPMC_PROCS", "2", /*overwrite=*/0);
  RunMpmcCases(cfg, emit);
}

}  // namespace shmlink::bench
