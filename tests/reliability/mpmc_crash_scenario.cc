// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Crash scenario for MpmcQueue: 2-3 producer processes and 2-3 consumer processes on one
// queue, one of them SIGKILLed (between claim and publish, after publish, while holding a
// claimed message, after release, or anywhere by an asynchronous kill), then replaced by a
// successor process: a producer's successor continues that producer's stream after the
// last seq the dead one claimed; a consumer's successor joins the consumers. The semantics
// checked (mpmc_queue.h "CRASH SEMANTICS"):
//
//  - every message whose publish() returned is delivered (the survivors recover the dead
//    process's registry entry);
//  - a producer killed between claim and publish loses only that unpublished message;
//  - a consumer killed while holding a message has it redelivered, flagged `redelivered`,
//    to another consumer: at most one message is delivered twice (the dead consumer held
//    at most one), and only with the flag; a completed release is never undone;
//  - per producer, each consumer sees that producer's messages in publish order (a
//    redelivered one excepted);
//  - nothing waits unboundedly, and the queue's name is gone once its creator (the parent)
//    destroys it.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "tests/kill_on_write.h"
#include "tests/reliability/crash_scenario.h"
#include "tests/test_util.h"

#include <shmlink/mpmc_layout.h>
#include <shmlink/mpmc_queue.h>
#include <shmlink/process_identity.h>

namespace shmlink::reliability {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr int kMaxProducers = 3;
constexpr int kMaxConsumers = 3;
constexpr int kReplacement = kMaxConsumers;  // consumer index of a killed one's successor
constexpr int kSlots = kMaxProducers + kMaxConsumers + 1;
constexpr uint32_t kMaxPerProducer = 4096;
constexpr size_t kMinMessage = 16;

enum Phase : uint32_t {
  kStart = 0,
  kClaim,      // inside claim() (producer or consumer)
  kFill,       // producer: claimed, writing
  kPublish,    // inside publish()
  kPublished,  // publish() returned, ledger not yet updated
  kHold,       // consumer: holding a claimed message, logging it
  kRelease,    // inside release()
  kReleased,   // release() returned
  kDone,
  kPhaseCount
};
const char* const kPhaseNames[kPhaseCount] = {"start",   "claim",         "fill",
                                              "publish", "after_publish", "hold",
                                              "release", "after_release", "done"};

struct Plan {
  int producers = 2;
  int consumers = 2;
  uint32_t per_producer = 1000;
  uint64_t slots = 64;
  uint64_t max_size = 128;
  bool victim_is_producer = true;
  int victim_index = 0;
  KillMethod kill = KillMethod::kNone;
  Phase self_phase = kFill;
  uint32_t self_at = 0;
  double delay_fraction = 0;
  microseconds cpu{0};
  uint32_t watch_at = 0;  // kWatch: armed from this seq (producer) / delivery (consumer) on
};

struct Ledger {
  std::atomic<uint32_t> phase[kSlots];
  std::atomic<uint32_t> published[kMaxProducers];  // publish() returned for [0, n)
  // Announced before each claim: the producer may have claimed [0, n), no more. A
  // successor starts at n, so it never reuses a seq the dead one may have published.
  std::atomic<uint32_t> claiming[kMaxProducers];
  std::atomic<uint32_t> successor_start[kMaxProducers];  // 0: no successor ran
  std::atomic<uint32_t> producers_finished;              // set by the parent
  // Producers that finished their stream (a killed one's successor finishes it): lets the
  // consumers end while the parent is blocked tracing a watched victim.
  std::atomic<uint32_t> producers_done;
  std::atomic<uint32_t> watch_unavailable;  // KillOnWrite could not arm (not x86-64)
  std::atomic<uint32_t> takeovers;          // successors that joined
  std::atomic<int64_t> loop_start[kSlots];
  std::atomic<uint32_t> misordered;
  std::atomic<uint32_t> corrupt;
  std::atomic<uint32_t> flagged;  // deliveries flagged redelivered
  std::atomic<uint32_t> deliveries[kMaxProducers][kMaxPerProducer];
  std::atomic<uint32_t> flagged_at[kMaxProducers][kMaxPerProducer];
};

uint32_t Seed(uint32_t p, uint32_t seq) { return p * 0x9E3779B9u + seq * 2654435761u + 5; }

void Write(std::span<std::byte> b, uint32_t p, uint32_t seq) {
  const uint32_t len = static_cast<uint32_t>(b.size()), seed = Seed(p, seq);
  std::memcpy(b.data(), &p, 4);
  std::memcpy(b.data() + 4, &seq, 4);
  std::memcpy(b.data() + 8, &len, 4);
  std::memcpy(b.data() + 12, &seed, 4);
  for (size_t i = kMinMessage; i < b.size(); ++i) b[i] = std::byte(static_cast<uint8_t>(seed + i));
}

bool Read(std::span<const std::byte> m, uint32_t* p, uint32_t* seq) {
  if (m.size() < kMinMessage) return false;
  uint32_t len, seed;
  std::memcpy(p, m.data(), 4);
  std::memcpy(seq, m.data() + 4, 4);
  std::memcpy(&len, m.data() + 8, 4);
  std::memcpy(&seed, m.data() + 12, 4);
  if (*p >= kMaxProducers || *seq >= kMaxPerProducer || len != m.size() || seed != Seed(*p, *seq)) {
    return false;
  }
  for (size_t i = kMinMessage; i < m.size(); ++i) {
    if (m[i] != std::byte(static_cast<uint8_t>(seed + i))) return false;
  }
  return true;
}

enum Exit : int { kExitOk = 0, kExitHang = 10, kExitError = 11 };

WaitOptions Slice(milliseconds timeout = milliseconds(50)) {
  WaitOptions w = WaitOptions::WithTimeout(timeout);
  w.liveness_check = milliseconds(5);
  return w;
}

struct Proc {
  const Plan& p;
  Ledger* l;
  bool producer;
  int index;
  bool successor;  // started by the parent in a killed process's place: never a victim
  Clock::time_point deadline;

  // This process's part in the trial; arms the CPU-time kill if it is the victim.
  static Proc Start(const Plan& p, Ledger* l, bool producer, int index, bool successor,
                    const TrialOptions& o) {
    Proc me{p, l, producer, index, successor, Clock::now() + o.wait_bound};
    if (me.victim() && p.kill == KillMethod::kCpuTimer) ArmCpuKillTimer(p.cpu);
    return me;
  }

  int slot() const { return producer ? index : kMaxProducers + index; }
  bool victim() const {
    return !successor && producer == p.victim_is_producer && index == p.victim_index;
  }
  void Set(Phase ph) const { l->phase[slot()].store(ph, std::memory_order_relaxed); }
  void Die(Phase ph, uint32_t seq) const {
    if (victim() && p.kill == KillMethod::kSelf && ph == p.self_phase && seq >= p.self_at) {
      ::raise(SIGKILL);
    }
  }
};

// The trial's queue, recovering dead participants at a short interval.
Expected<MpmcQueue> AttachQueue(const std::string& name) {
  auto q = MpmcQueue::Attach(name);
  if (q) q->set_recovery_interval(milliseconds(5));
  return q;
}

// kWatch: arms the tracer on the stamp of the slot at the queue's claim hint (enqueue_pos
// for a producer, dequeue_pos for a consumer), to fire when this handle (registry `index`)
// writes `state` there. Matching index and state, so a failed CAS (which writes back
// another handle's stamp) does not fire it. False if the watch could not be armed.
bool ArmStampWatch(const MpmcQueue&, const Segment& seg, bool consumer, uint32_t index,
                   uint64_t state) {
  auto g = ValidateMpmcSegment(seg);
  if (!g) return false;
  const MpmcView v = MpmcViewOf(seg, *g);
  // Relaxed: only a guess of the next position; a wrong guess just does not fire.
  const uint64_t pos =
      (consumer ? v.control->dequeue_pos : v.control->enqueue_pos).load(std::memory_order_relaxed);
  constexpr uint64_t kIdxAndState = (uint64_t{0xff} << kStampIdxShift) | 3;
  return testing::KillOnWrite(&v.slot(pos)->stamp, kIdxAndState,
                              (uint64_t{index} << kStampIdxShift) | state);
}

int ProducerMain(const std::string& name, const Plan& p, Ledger* l, int index, bool successor,
                 const TrialOptions& o) {
  Proc me = Proc::Start(p, l, true, index, successor, o);
  auto q = AttachQueue(name);
  if (!q) return kExitError;
  auto tx = q->Producer();
  if (!tx) return kExitError;
  std::mt19937_64 rng(p.per_producer * 31 + index + (successor ? 1000 : 0));
  uint32_t start = 0;
  if (successor) {
    // Continue after the last seq the dead producer may have claimed (read after the
    // parent reaped it: its stores are all done).
    start = l->claiming[index].load(std::memory_order_relaxed);
    l->successor_start[index].store(start, std::memory_order_relaxed);
    l->takeovers.fetch_add(1, std::memory_order_relaxed);
  } else {
    l->loop_start[me.slot()].store(NowNs());
  }
  for (uint32_t seq = start; seq < p.per_producer; ++seq) {
    const size_t n = kMinMessage + rng() % (p.max_size - kMinMessage + 1);
    // Announce before claiming (SYNC(ledger): a release store, so no store of the claim
    // below is performed before it; read by the parent after waitpid).
    l->claiming[index].store(seq + 1, std::memory_order_release);
    me.Set(kClaim);
    Expected<std::span<std::byte>> buf = RingErrc::kWouldBlock;
    for (;;) {
      if (me.victim() && p.kill == KillMethod::kWatch && seq >= p.watch_at) {
        // Killed right after our claim CAS turns the stamp Claimed (before publish). The
        // claim goes to the slot at the hint, unless another producer wins it: then the
        // watch is re-armed for the next try.
        if (!ArmStampWatch(*q, q->segment(), false, tx->registry_index(), kSlotClaimed)) {
          l->watch_unavailable.store(1);
        }
      }
      buf = tx->claim(n, Slice());
      if (buf) break;
      if (buf.error() == RingErrc::kTimedOut && Clock::now() < me.deadline) continue;
      return buf.error() == RingErrc::kTimedOut ? kExitHang : kExitError;
    }
    me.deadline = Clock::now() + o.wait_bound;  // a hang is no progress for wait_bound
    me.Set(kFill);
    std::memset(buf->data(), 0xEE, buf->size() / 2);
    me.Die(kFill, seq);  // claimed, half written, never published
    Write(*buf, static_cast<uint32_t>(index), seq);
    me.Set(kPublish);
    if (!tx->publish()) return kExitError;
    me.Set(kPublished);
    me.Die(kPublished, seq);
    l->published[index].store(seq + 1, std::memory_order_relaxed);
  }
  l->producers_done.fetch_add(1);
  me.Set(kDone);
  return kExitOk;
}

int ConsumerMain(const std::string& name, const Plan& p, Ledger* l, int index,
                 const TrialOptions& o) {
  Proc me = Proc::Start(p, l, false, index, index == kReplacement, o);
  auto q = AttachQueue(name);
  if (!q) return kExitError;
  auto rx = q->Consumer();
  if (!rx) return kExitError;
  if (me.successor) l->takeovers.fetch_add(1, std::memory_order_relaxed);
  uint32_t last[kMaxProducers];
  bool seen[kMaxProducers] = {};
  l->loop_start[me.slot()].store(NowNs());
  uint32_t got = 0;
  int idle = 0;
  for (;;) {
    me.Set(kClaim);
    const bool finished = l->producers_finished.load() != 0 ||
                          l->producers_done.load() >= static_cast<uint32_t>(p.producers);
    if (me.victim() && p.kill == KillMethod::kWatch && got >= p.watch_at) {
      // Killed right after our claim CAS turns a stamp Reading: holding a message not yet
      // returned to us. It must be redelivered (flagged) to another consumer.
      if (!ArmStampWatch(*q, q->segment(), true, rx->registry_index(), kSlotReading)) {
        l->watch_unavailable.store(1);
      }
    }
    // Once every producer is finished, a short slice: the idle rounds that end the loop
    // (below) should not cost 50 ms each.
    auto m = rx->claim(Slice(finished ? milliseconds(2) : milliseconds(50)));
    if (!m) {
      if (m.error() != RingErrc::kTimedOut) return kExitError;
      // Done when every producer is finished (parent's flag) and nothing is queued or
      // orphaned - after recovering any dead participant ourselves.
      if (finished) {
        q->RecoverDead();
        const MpmcStats s = q->stats();
        if (s.size == 0 && s.orphans == 0 && ++idle >= 3) break;
      }
      if (Clock::now() >= me.deadline) return kExitHang;
      continue;
    }
    idle = 0;
    me.deadline = Clock::now() + o.wait_bound;
    me.Set(kHold);
    uint32_t prod, seq;
    if (!Read(m->data, &prod, &seq)) {
      l->corrupt.fetch_add(1);
      return kExitError;
    }
    // The flag is logged before the delivery is counted (SYNC(ledger), as in the spsc
    // scenario: a kill between the two must not leave a count the flag would excuse
    // without the flag; release keeps the flag's store first; read after waitpid).
    if (m->redelivered) {
      l->flagged.fetch_add(1, std::memory_order_relaxed);
      l->flagged_at[prod][seq].fetch_add(1, std::memory_order_relaxed);
    }
    l->deliveries[prod][seq].fetch_add(1, std::memory_order_release);
    if (!m->redelivered) {
      if (seen[prod] && seq <= last[prod]) l->misordered.fetch_add(1);
      seen[prod] = true;
      last[prod] = seq;
    }
    me.Die(kHold, got);  // holding a claimed message
    me.Set(kRelease);
    if (!rx->release()) return kExitError;
    me.Set(kReleased);
    me.Die(kReleased, got);
    ++got;
  }
  me.Set(kDone);
  return kExitOk;
}

Plan MakePlan(std::mt19937_64& rng) {
  Plan p;
  p.producers = 2 + static_cast<int>(rng() % 2);
  p.consumers = 2 + static_cast<int>(rng() % 2);
  p.per_producer = 50 + static_cast<uint32_t>(rng() % 2000);
  p.slots = uint64_t{8} << (rng() % 6);  // 8 .. 256
  p.max_size = kMinMessage + rng() % 240;
  p.victim_is_producer = rng() % 2 == 0;
  p.victim_index = static_cast<int>(rng() % (p.victim_is_producer ? p.producers : p.consumers));
  const uint64_t k = rng() % 20;
  p.kill = k < 8    ? KillMethod::kSelf
           : k < 16 ? KillMethod::kAsync
           : k < 19 ? KillMethod::kCpuTimer
                    : KillMethod::kNone;
  p.self_phase =
      p.victim_is_producer ? (rng() % 2 ? kFill : kPublished) : (rng() % 2 ? kHold : kReleased);
  p.self_at = static_cast<uint32_t>(rng() % p.per_producer);
  p.delay_fraction = static_cast<double>(rng() % 1000) / 1000.0;
  p.cpu = microseconds(200 + rng() % 3000);
  // Drawn last, so that the plans above stay what they were for a given seed. A consumer
  // is watched from an early delivery on: it must be killed before the stream ends (the
  // parent cannot tell consumers the end while it traces the victim; producers_done does).
  if (p.kill == KillMethod::kAsync && rng() % 2 == 0) p.kill = KillMethod::kWatch;
  p.watch_at = static_cast<uint32_t>(rng() % (p.victim_is_producer ? p.per_producer : 16));
  return p;
}

class MpmcScenario final : public CrashScenario {
 public:
  std::string name() const override { return "mpmc"; }

  TrialCounts RunTrial(const TrialOptions& o) override {
    std::mt19937_64 rng(o.seed);
    const Plan p = MakePlan(rng);
    TrialCounts c;
    const std::string name = testing::UniqueShmName("crash-mpmc");
    Ledger* l = testing::NewShared<Ledger>();
    std::optional<MpmcQueue> q;
    {
      auto r = MpmcQueue::Create(name, p.slots, p.max_size);
      if (!r) {
        std::fprintf(stderr, "mpmc: create: %s\n", r.error().message().c_str());
        c.errors++;
        testing::DeleteShared(l);
        return c;
      }
      q.emplace(std::move(*r));
    }
    const auto trial_deadline = Clock::now() + o.deadline;
    // Tags: producer i -> i, consumer i -> kMaxProducers + i (kReplacement: the successor
    // of a killed consumer); a killed producer's successor has its tag + kSlots.
    std::vector<Child> kids(p.producers + p.consumers);
    const size_t vkid = p.victim_is_producer ? p.victim_index : p.producers + p.victim_index;
    const bool watch = p.kill == KillMethod::kWatch;
    for (int i = 0; i < p.producers; ++i) {
      if (watch && vkid == static_cast<size_t>(i)) continue;
      kids[i] = {testing::ForkChild([&] { return ProducerMain(name, p, l, i, false, o); }), i};
    }
    for (int i = 0; i < p.consumers; ++i) {
      if (watch && vkid == static_cast<size_t>(p.producers + i)) continue;
      kids[p.producers + i] = {testing::ForkChild([&] { return ConsumerMain(name, p, l, i, o); }),
                               kMaxProducers + i};
    }
    bool at_point = false;
    if (watch) {
      // Last: the traced victim blocks this process until it is dead or done.
      const int i = p.victim_index;
      kids[vkid] = p.victim_is_producer
                       ? RunWatchedChild([&] { return ProducerMain(name, p, l, i, false, o); }, i,
                                         o.wait_bound, c, &at_point)
                       : RunWatchedChild([&] { return ConsumerMain(name, p, l, i, o); },
                                         kMaxProducers + i, o.wait_bound, c, &at_point);
    }
    const int vslot = p.victim_is_producer ? p.victim_index : kMaxProducers + p.victim_index;
    const pid_t victim = kids[vkid].pid;
    const auto t0 = Clock::now();
    if (p.kill == KillMethod::kAsync) {
      AwaitOrExit(victim, std::chrono::seconds(5),
                  [&] { return l->loop_start[vslot].load() != 0; });
      std::this_thread::sleep_for(microseconds(static_cast<int64_t>(p.delay_fraction * loop_us_)));
      ::kill(victim, SIGKILL);
    }
    bool killed = false;
    uint32_t victim_phase = 0;
    uint32_t dead_published = 0;  // the killed producer's ledger at its death
    int producers_running = p.producers;
    Supervise(
        kids, trial_deadline, c,
        [&](size_t i) {
          const Child k = kids[i];  // a copy: push_back below may reallocate
          const bool is_producer = k.tag < kMaxProducers || k.tag >= kSlots;
          if (k.pid == victim) {
            killed = KilledBySigkill(k.status);
            victim_phase = l->phase[vslot].load();
            if (killed) {
              // A successor takes the dead process's place.
              if (is_producer) {
                dead_published = l->published[k.tag].load();
                const int index = k.tag;
                kids.push_back(
                    {testing::ForkChild([&] { return ProducerMain(name, p, l, index, true, o); }),
                     k.tag + kSlots});
                return;  // producers_running unchanged: the successor runs in its place
              }
              kids.push_back(
                  {testing::ForkChild([&] { return ConsumerMain(name, p, l, kReplacement, o); }),
                   kMaxProducers + kReplacement});
              return;
            }
          }
          if (is_producer) --producers_running;
          if (k.status == -1) return;  // overran the deadline: counted as a hang
          const int code = testing::ExitCodeOf(k.status);
          if (code != kExitOk) {
            std::fprintf(stderr, "mpmc: %s (tag %d) exit %d (victim %s %d, %s, seed %llu)\n",
                         k.pid == victim ? "victim" : "survivor", k.tag, code,
                         p.victim_is_producer ? "producer" : "consumer", p.victim_index,
                         KillMethodName(p.kill), (unsigned long long)o.seed);
            (code == kExitHang ? c.hangs : c.errors)++;
          }
        },
        [&] {
          // Every producer (and successor) finished: tell consumers no more is coming.
          if (producers_running == 0 && l->producers_finished.load() == 0) {
            loop_us_ = 0.8 * loop_us_ +
                       0.2 * std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
            l->producers_finished.store(1);
          }
        });
    if (killed) {
      c.kills++;
      c.kill_phases[std::string(p.victim_is_producer ? "mpmc-producer:" : "mpmc-consumer:") +
                    (at_point ? (p.victim_is_producer ? "at_claimed" : "at_reading")
                              : PhaseName(kPhaseNames, victim_phase))]++;
    }
    if (l->watch_unavailable.load()) c.kill_phases["mpmc:watch_unavailable"]++;
    c.takeovers += l->takeovers.load();

    // ---- accounting
    const bool consumer_killed = killed && !p.victim_is_producer;
    const bool producer_killed = killed && p.victim_is_producer;
    uint32_t dup_total = 0;
    for (int pr = 0; pr < p.producers; ++pr) {
      const uint32_t published = l->published[pr].load();
      // The dead producer's window: seqs it may have claimed but not published; its
      // successor went on after them. At most one (the claim it died holding) is missing.
      const bool dead = producer_killed && pr == p.victim_index;
      const uint32_t lo = dead ? dead_published : 0;
      const uint32_t hi = dead ? l->successor_start[pr].load() : 0;
      uint32_t missing_in_window = 0;
      for (uint32_t s = 0; s < kMaxPerProducer; ++s) {
        // Acquire: pairs with the consumers' release increment.
        const uint32_t d = l->deliveries[pr][s].load(std::memory_order_acquire);
        c.messages += d;
        const bool in_window = s >= lo && s < hi;
        if (s < published && d == 0) {
          if (in_window) {
            missing_in_window++;
          } else {
            c.lost++;
          }
        }
        if (d > 1) {
          // Allowed: one redelivery (flagged) of the message a killed consumer held.
          if (consumer_killed && d == 2 && l->flagged_at[pr][s].load() >= 1 && dup_total == 0) {
            c.redelivered++;
            dup_total++;
          } else {
            c.duplicated += d - 1;
          }
        }
        if (d > 0 && s >= p.per_producer) c.corrupt++;
        // A producer that killed itself between claim and publish: that claim (the ledger
        // count is exact then) must never be delivered.
        if (d > 0 && dead && in_window && p.kill == KillMethod::kSelf && p.self_phase == kFill) {
          c.corrupt++;
        }
        // Killed by the tracer right after its claim CAS: that claim (the window's one seq)
        // becomes a skip record, never delivered.
        if (d > 0 && dead && in_window && at_point) c.corrupt++;
      }
      if (missing_in_window > 1) c.lost += missing_in_window - 1;
    }
    if (!consumer_killed && l->flagged.load() != 0) c.duplicated += l->flagged.load();
    // Killed by the tracer right after its claim CAS made a stamp Reading: it held exactly
    // one message, which another consumer must have received, flagged redelivered.
    if (consumer_killed && at_point && l->flagged.load() != 1) {
      std::fprintf(stderr, "mpmc: consumer killed holding a message; %u flagged redeliveries\n",
                   l->flagged.load());
      if (l->flagged.load() == 0) c.lost++;
    }
    c.misordered += l->misordered.load();
    c.corrupt += l->corrupt.load();

    // ---- files
    q.reset();  // creator: kUnlinkOnDestroy
    if (testing::ShmExists(name)) {
      c.leaked++;
      ::shm_unlink(name.c_str());
    }
    if (o.verbose) {
      std::fprintf(
          stderr,
          "mpmc seed=%llu P=%d C=%d n=%u slots=%llu victim=%s%d kill=%s killed=%d phase=%s\n",
          (unsigned long long)o.seed, p.producers, p.consumers, p.per_producer,
          (unsigned long long)p.slots, p.victim_is_producer ? "P" : "C", p.victim_index,
          KillMethodName(p.kill), killed, PhaseName(kPhaseNames, victim_phase));
    }
    testing::DeleteShared(l);
    return c;
  }

 private:
  double loop_us_ = 5000;
};

}  // namespace

std::unique_ptr<CrashScenario> MakeMpmcScenario() { return std::make_unique<MpmcScenario>(); }

}  // namespace shmlink::reliability
