// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Crash scenario for SpscRing: one producer process, one consumer process, one of them
// SIGKILLed at a random point, then a successor process takes the dead one's role over and
// finishes the stream. The semantics checked (see spsc_ring.h, docs/RELIABILITY.md):
//
//  Producer killed: every message whose commit() returned is delivered exactly once, in
//    order; a message reserved but not committed is never delivered; the consumer's
//    blocking peek returns kPeerDead while no producer is there. A successor producer
//    claims the role, resumes after the last published record (also when the dead one was
//    killed inside commit(), between the header store and write_pos) and continues the
//    stream with the seqs after the last one the dead producer wrote: the consumer sees one
//    gap there (the dead producer's uncommitted reservations) and otherwise consecutive
//    seqs, each exactly once, then kClosed.
//  Consumer killed: a new consumer claims the role (the dead holder is detected by pid +
//    start time) and resumes at the last release(): nothing is lost, and the only messages
//    delivered twice are those the dead consumer had peeked or advanced past but not yet
//    released (at-least-once for the unreleased tail); the producer, blocked on a full
//    ring meanwhile, gets kPeerDead and continues once the new consumer is there.
//  Files: the ring's creator (the parent, or the producer process) uses kUnlinkOnDestroy.
//    When the creator was killed, the name stays, and the documented recovery applies:
//    SpscRing::Create on the same name reclaims a segment whose creator and role holders
//    are dead. After the trial the name must not exist.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
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

#include <shmlink/process_identity.h>
#include <shmlink/spsc_layout.h>
#include <shmlink/spsc_ring.h>

namespace shmlink::reliability {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr uint32_t kMaxMessages = 8192;

enum Phase : uint32_t {
  kStart = 0,
  kCreate,
  kClaim,
  kReserve,      // inside reserve()
  kFill,         // reserved, writing the payload
  kCommit,       // inside commit()
  kCommitted,    // commit() returned, ledger not yet updated
  kClose,        // inside close()
  kClosed,       // close() returned
  kPeek,         // inside peek()
  kProcess,      // peeked, checking + logging the message
  kAdvance,      // advance() returned, not released
  kRelease,      // inside release()
  kReleased,     // release() returned, ledger not yet updated
  kReaderClose,  // inside the consumer's close()
  kDone,
  kAnnounced,  // consumer: announced the seq it is delivering, not yet counted it
  kPhaseCount
};
const char* const kPhaseNames[kPhaseCount] = {
    "start",        "create",        "claim",        "reserve", "fill",     "commit",
    "after_commit", "close",         "after_close",  "peek",    "process",  "after_advance",
    "release",      "after_release", "reader_close", "done",    "announced"};

enum class Role { kProducer, kConsumer };

// kWatch: the shared word whose write kills the victim (inside the library call).
enum class Watch : uint32_t {
  kHeader,    // producer: the header word that publishes a batch (commit(), before write_pos)
  kWritePos,  // producer: write_pos, right after commit() stored it
  kReadPos,   // consumer: read_pos, right after release() stored it
};
const char* WatchName(Watch w) {
  return w == Watch::kHeader ? "at_header" : w == Watch::kWritePos ? "at_write_pos" : "at_read_pos";
}

struct Plan {
  uint64_t capacity = 4096;
  uint32_t messages = 1000;
  uint32_t max_batch = 1;         // producer: reservations per commit
  uint32_t release_every = 1;     // consumer: messages per release (advance in between)
  size_t max_size = 64;           // largest message
  bool producer_creates = false;  // else the parent creates the ring
  bool sleep_strategy = false;    // WaitOptions::Sleep instead of spin-then-sleep
  Role victim = Role::kProducer;
  KillMethod kill = KillMethod::kNone;
  Phase self_phase = kStart;     // kSelf: where
  uint32_t self_at = 0;          //        at which message
  microseconds delay{0};         // kCpuTimer: CPU time before SIGKILL
  double delay_fraction = 0;     // kAsync/kCpuTimer: of the typical loop time; < 0: setup
  Watch watch = Watch::kHeader;  // kWatch: which word
  uint32_t watch_at = 0;         //         armed from this seq on
};

// Shared with the children (anonymous shared mapping).
constexpr uint32_t kNoSeq = ~uint32_t{0};

struct Ledger {
  std::atomic<uint32_t> phase[2];   // per role (incarnations of a role share one)
  std::atomic<uint32_t> created;    // producer published the ring (producer_creates)
  std::atomic<uint32_t> claimed;    // a producer holds the role
  std::atomic<uint32_t> reserved;   // messages [0, reserved) fully written into the ring
  std::atomic<uint32_t> committed;  // commit() returned for [0, committed)
  std::atomic<uint32_t> producer_closed;
  // The successor producer's first seq (kNoSeq: none started). Stored before its first
  // reservation, so a consumer that reads one of its messages also reads this (see
  // ConsumerMain).
  std::atomic<uint32_t> successor_start;
  // Set by the parent once no producer will come any more (the last incarnation exited):
  // until then a consumer that sees kPeerDead waits for the successor.
  std::atomic<uint32_t> no_more_producers;
  std::atomic<uint32_t> takeovers;  // successors that claimed a role
  // Set by the producer just before commit(): the batch it publishes ends at this seq.
  std::atomic<uint32_t> committing;
  std::atomic<uint32_t> watch_unavailable;  // KillOnWrite could not arm (not x86-64)
  // Per role: steady-clock ns when its message loop started / ended (0: not yet). The
  // parent times asynchronous kills from the start and learns typical loop durations.
  std::atomic<int64_t> loop_start[2];
  std::atomic<int64_t> loop_end[2];
  struct Incarnation {
    std::atomic<int64_t> first;           // first seq delivered to it, -1 none
    std::atomic<int64_t> last;            // last seq delivered to it, -1 none
    std::atomic<uint32_t> released_upto;  // release() returned for seqs below this
    std::atomic<uint32_t> misordered;
    std::atomic<uint32_t> corrupt;
    std::atomic<uint32_t> count;
  } inc[2];
  std::atomic<uint32_t> deliveries[kMaxMessages];
};

void SetPhase(Ledger* l, Role r, Phase p) {
  // Relaxed: the ledger is read by the parent only after the writer has died or exited
  // (waitpid orders it); a dying process's executed stores are in the shared page.
  l->phase[r == Role::kProducer ? 0 : 1].store(p, std::memory_order_relaxed);
}

// Exit codes of the children.
enum Exit : int {
  kExitOk = 0,          // producer: closed; consumer: got kClosed
  kExitPeerDead = 1,    // consumer: got kPeerDead after draining
  kExitNoProducer = 2,  // consumer: the producer died before it ever claimed its role
  kExitNoRing = 3,      // the ring never appeared (its creator died first)
  kExitClosed = 4,      // successor producer: the dead one had already closed the stream
  kExitHang = 10,       // a bounded wait expired where progress was due
  kExitError = 11,      // unexpected error result
};

class SelfKill {
 public:
  SelfKill(const Plan& p, Role me, bool armed) : p_(p), armed_(armed && p.victim == me) {}
  void At(Phase phase, uint64_t seq) const {
    if (armed_ && p_.kill == KillMethod::kSelf && phase == p_.self_phase && seq >= p_.self_at) {
      ::raise(SIGKILL);
    }
  }

 private:
  const Plan& p_;
  bool armed_;
};

WaitOptions Waits(const Plan& p, milliseconds slice) {
  WaitOptions w = p.sleep_strategy ? WaitOptions::Sleep(slice) : WaitOptions::WithTimeout(slice);
  w.liveness_check = milliseconds(5);
  return w;
}

size_t PickSize(std::mt19937_64& rng, size_t max_size) {
  if (rng() % 16 == 0) return kSeqMessageMin + rng() % (max_size - kSeqMessageMin + 1);
  return kSeqMessageMin + rng() % std::min<size_t>(64, max_size - kSeqMessageMin + 1);
}

// Incarnation 0 is the first producer (the only one that can be a victim); 1 is the
// successor the parent starts after killing it.
int ProducerMain(const std::string& name, const Plan& p, Ledger* l, int incarnation, uint64_t seed,
                 const TrialOptions& o) {
  const bool armed = incarnation == 0;
  const SelfKill die(p, Role::kProducer, armed);
  if (armed && p.victim == Role::kProducer && p.kill == KillMethod::kCpuTimer) {
    ArmCpuKillTimer(p.delay);
  }
  std::mt19937_64 rng(seed ^ 0x5bd1e995 ^ incarnation);
  // A hang is no progress for wait_bound (each delivered/reserved message moves it on).
  auto deadline = Clock::now() + o.wait_bound;
  std::optional<SpscRing> ring;
  SetPhase(l, Role::kProducer, kCreate);
  if (p.producer_creates && armed) {
    auto r = SpscRing::Create(name, p.capacity);
    if (!r) return kExitError;
    ring.emplace(std::move(*r));
    l->created.store(1, std::memory_order_relaxed);
  } else {
    auto r = SpscRing::Attach(name);
    if (!r && !armed && p.producer_creates && r.error() == std::errc::no_such_file_or_directory) {
      // The dead creator had removed the name on its way out (killed after the stream was
      // complete, in its handle's destructor): nothing left to do.
      if (l->created.load(std::memory_order_relaxed) != 0) return kExitClosed;
      // The dead creator never made the segment: the successor creates it.
      r = SpscRing::Create(name, p.capacity);
    }
    if (!r) {
      // kNotReady / kTruncated: the dead creator left a segment without a published header
      // (the documented gap); nothing to take over.
      const bool gap = r.error() == RingErrc::kNotReady || r.error() == RingErrc::kTruncated;
      return !armed && gap ? kExitNoRing : kExitError;
    }
    ring.emplace(std::move(*r));
  }
  SetPhase(l, Role::kProducer, kClaim);
  Expected<SpscProducer> tx = RingErrc::kRoleTaken;
  for (;;) {
    tx = ring->Producer();
    if (tx) break;
    // kRoleTaken: only for the instant between the predecessor's kill and its exit.
    if (tx.error() != RingErrc::kRoleTaken || armed || Clock::now() >= deadline) {
      std::fprintf(stderr, "spsc: producer %d: claim: %s\n", incarnation,
                   tx.error().message().c_str());
      return kExitError;
    }
    ::usleep(200);
  }
  uint32_t seq = 0;
  if (!armed) {
    // Continue after every seq the dead producer wrote (committed or not: the ones it did
    // not commit are never delivered, so the consumer sees a gap, not a repeat). The dead
    // producer's last store was before its death; we were forked after the parent reaped
    // it.
    seq = l->reserved.load(std::memory_order_relaxed);
    // SYNC: release, and before our first commit (release): a consumer that acquires one of
    // our headers reads this value (see ConsumerMain's order check).
    l->successor_start.store(seq, std::memory_order_release);
    l->takeovers.fetch_add(1, std::memory_order_relaxed);
  }
  l->claimed.store(1, std::memory_order_relaxed);
  if (armed) l->loop_start[0].store(NowNs(), std::memory_order_relaxed);
  // kWatch: where the words the library writes live in our mapping, and a mirror of the
  // producer's position (the first producer starts at 0), to know the batch's header word.
  const bool watching = armed && p.victim == Role::kProducer && p.kill == KillMethod::kWatch;
  SpscRegion region;
  if (watching) {
    auto g = ValidateSpscSegment(ring->segment(), SegmentKind::kSpscRing, 1);
    if (!g) return kExitError;
    region = SpscRegionAt(ring->segment(), *g, 0);
  }
  const uint64_t mask = p.capacity - 1;
  uint64_t pos = 0, batch_start = 0, batch_word = 0;
  bool watch_armed = false;
  while (seq < p.messages) {
    const uint32_t batch = 1 + static_cast<uint32_t>(rng() % p.max_batch);
    for (uint32_t b = 0; b < batch && seq < p.messages; ++b) {
      const size_t n = PickSize(rng, p.max_size);
      const uint64_t pos_before = pos;
      uint64_t first_word = MakeRecordWord(kRecordData, static_cast<uint32_t>(n));
      if (const uint64_t to_end = p.capacity - (pos & mask); RecordSize(n) > to_end) {
        first_word = MakeRecordWord(kRecordPadding, static_cast<uint32_t>(to_end - 8));
        pos += to_end;
      }
      pos += RecordSize(n);
      SetPhase(l, Role::kProducer, kReserve);
      Expected<std::span<std::byte>> buf = RingErrc::kWouldBlock;
      for (;;) {
        buf = tx->reserve(n, Waits(p, milliseconds(50)));
        if (buf) break;
        const auto e = buf.error();
        // A successor finds the stream closed when its predecessor died after close().
        if (e == RingErrc::kClosed && !armed) return kExitClosed;
        // Consumer dead (or not there yet) with a full ring: wait for its replacement.
        if ((e == RingErrc::kPeerDead || e == RingErrc::kTimedOut) && Clock::now() < deadline) {
          continue;
        }
        if (e != RingErrc::kTimedOut && e != RingErrc::kPeerDead) {
          std::fprintf(stderr, "spsc: producer %d: reserve: %s\n", incarnation,
                       e.message().c_str());
          return kExitError;
        }
        return kExitHang;
      }
      deadline = Clock::now() + o.wait_bound;
      if (tx->pending() == 1) {  // the first record of a batch (maybe after a padding one)
        batch_start = pos_before;
        batch_word = first_word;
      }
      // A blocking reserve() that had to wait committed the pending batch first (the
      // reader can only free what was published): account for that implicit commit.
      if (const uint32_t done = seq + 1 - tx->pending(); done > l->committed.load()) {
        l->committed.store(done, std::memory_order_relaxed);
      }
      SetPhase(l, Role::kProducer, kFill);
      if (seq >= p.self_at) {
        // Die with half a payload written: the message must never be delivered.
        std::memset(buf->data(), 0xEE, buf->size() / 2);
        die.At(kFill, seq);
      }
      WriteSeqMessage(*buf, seq);
      ++seq;
      l->reserved.store(seq, std::memory_order_relaxed);
      die.At(kReserve, seq);  // pending, uncommitted reservations
    }
    // SYNC(ledger): release, before commit() publishes anything: read after waitpid.
    l->committing.store(seq, std::memory_order_release);
    if (watching && !watch_armed && seq >= p.watch_at) {
      // The next write of the word is inside this commit(): the kill lands right after it.
      watch_armed = true;
      const void* word = p.watch == Watch::kHeader
                             ? static_cast<const void*>(region.data + (batch_start & mask))
                             : static_cast<const void*>(&region.control->write_pos);
      const uint64_t value = p.watch == Watch::kHeader ? batch_word : pos;
      if (!testing::KillOnWrite(word, ~uint64_t{0}, value)) l->watch_unavailable.store(1);
    }
    SetPhase(l, Role::kProducer, kCommit);
    tx->commit();
    SetPhase(l, Role::kProducer, kCommitted);
    die.At(kCommitted, seq);
    l->committed.store(seq, std::memory_order_relaxed);
  }
  if (armed) l->loop_end[0].store(NowNs(), std::memory_order_relaxed);
  SetPhase(l, Role::kProducer, kClose);
  tx->close();
  SetPhase(l, Role::kProducer, kClosed);
  l->producer_closed.store(1, std::memory_order_relaxed);
  die.At(kClosed, seq);
  // Linger until the reader is done: when this process created the ring, its exit unlinks
  // the name, and a replacement consumer must still be able to attach and drain.
  while (!tx->reader_closed()) {
    if (Clock::now() >= deadline) return kExitHang;
    ::usleep(300);
  }
  SetPhase(l, Role::kProducer, kDone);
  return kExitOk;
}

int ConsumerMain(const std::string& name, const Plan& p, Ledger* l, int incarnation, uint64_t seed,
                 const TrialOptions& o) {
  const bool armed = incarnation == 0;  // the replacement is never killed
  const SelfKill die(p, Role::kConsumer, armed);
  if (armed && p.victim == Role::kConsumer && p.kill == KillMethod::kCpuTimer) {
    ArmCpuKillTimer(p.delay);
  }
  std::mt19937_64 rng(seed ^ 0x27d4eb2f ^ incarnation);
  auto& inc = l->inc[incarnation];
  // A hang is no progress for wait_bound (each delivered/reserved message moves it on).
  auto deadline = Clock::now() + o.wait_bound;
  // True once the parent said that no producer will come any more. Read BEFORE the look at
  // the ring that it decides about: the parent sets it after reaping the last producer, so
  // a look after a true read sees everything any producer ever published. Acquire: pairs
  // with the parent's release store.
  auto producers_gone = [&] { return l->no_more_producers.load(std::memory_order_acquire) != 0; };
  SetPhase(l, Role::kConsumer, kStart);
  // Attach: the producer may still be creating the ring, or may have died doing so (then
  // its successor creates it, or nobody does).
  std::optional<SpscRing> ring;
  for (;;) {
    const bool gone = producers_gone();
    auto r = SpscRing::Attach(name);
    if (r) {
      ring.emplace(std::move(*r));
      break;
    }
    if (gone) return kExitNoRing;
    if (Clock::now() >= deadline) return kExitHang;
    ::usleep(200);
  }
  SetPhase(l, Role::kConsumer, kClaim);
  std::optional<SpscConsumer> rx;
  for (;;) {
    auto c = ring->Consumer();
    if (c) {
      rx.emplace(std::move(*c));
      break;
    }
    // kRoleTaken: the killed predecessor is not reaped yet (a zombie counts as dead, so
    // this is only the instant between kill and exit).
    if (c.error() != RingErrc::kRoleTaken || Clock::now() >= deadline) return kExitError;
    ::usleep(200);
  }
  if (!armed) l->takeovers.fetch_add(1, std::memory_order_relaxed);
  uint32_t unreleased = 0;
  if (armed) l->loop_start[1].store(NowNs(), std::memory_order_relaxed);
  int64_t last = -1;
  const bool watching = armed && p.victim == Role::kConsumer && p.kill == KillMethod::kWatch;
  bool watch_armed = false;
  // Frees every message up to `seq` (peeked or advanced past) and logs it as released.
  auto release_upto = [&](int64_t seq) {
    if (watching && !watch_armed && seq >= p.watch_at) {
      // Killed right after release() stored read_pos (its first write from now on).
      watch_armed = true;
      auto g = ValidateSpscSegment(ring->segment(), SegmentKind::kSpscRing, 1);
      if (!g || !testing::KillOnWrite(&SpscRegionAt(ring->segment(), *g, 0).control->read_pos)) {
        l->watch_unavailable.store(1);
      }
    }
    SetPhase(l, Role::kConsumer, kRelease);
    rx->release();
    SetPhase(l, Role::kConsumer, kReleased);
    die.At(kReleased, static_cast<uint64_t>(seq));
    inc.released_upto.store(static_cast<uint32_t>(seq + 1), std::memory_order_relaxed);
    unreleased = 0;
  };
  for (;;) {
    SetPhase(l, Role::kConsumer, kPeek);
    const bool gone = producers_gone();
    auto msg = rx->try_peek();
    if (!msg && msg.error() == RingErrc::kWouldBlock) {
      // Never block while holding advanced-but-unreleased messages: they may be exactly
      // the space the producer is waiting for (documented in spsc_ring.h).
      if (unreleased > 0) {
        release_upto(last);
        SetPhase(l, Role::kConsumer, kPeek);
      }
      msg = rx->peek(Waits(p, milliseconds(50)));
    }
    if (!msg) {
      const auto e = msg.error();
      if (e == RingErrc::kTimedOut || (e == RingErrc::kPeerDead && !gone)) {
        // No producer yet, or a dead one whose successor is coming: wait for it. Once no
        // producer will come (and we drained what they published: `gone` was read before
        // this look), end: nobody ever claimed the role, or the last one died or failed.
        if (gone) {
          const bool never = l->claimed.load(std::memory_order_relaxed) == 0;
          SetPhase(l, Role::kConsumer, kReaderClose);
          rx->close();
          SetPhase(l, Role::kConsumer, kDone);
          return never ? kExitNoProducer : kExitPeerDead;
        }
        if (Clock::now() >= deadline) return kExitHang;
        if (e == RingErrc::kPeerDead) ::usleep(500);  // kPeerDead returns at once
        continue;
      }
      SetPhase(l, Role::kConsumer, kReaderClose);
      rx->close();
      die.At(kReaderClose, kMaxMessages);
      SetPhase(l, Role::kConsumer, kDone);
      if (armed) l->loop_end[1].store(NowNs(), std::memory_order_relaxed);
      if (e == RingErrc::kClosed) return kExitOk;
      if (e == RingErrc::kPeerDead) return kExitPeerDead;
      std::fprintf(stderr, "spsc: consumer %d: peek: %s\n", incarnation, e.message().c_str());
      return kExitError;
    }
    deadline = Clock::now() + o.wait_bound;
    SetPhase(l, Role::kConsumer, kProcess);
    const int64_t seq = ReadSeqMessage(*msg, kMaxMessages);
    if (seq < 0) {
      inc.corrupt.fetch_add(1, std::memory_order_relaxed);
      return kExitError;
    }
    if (last >= 0 && seq != last + 1) {
      // One gap is in order: from the dead producer's last committed message to its
      // successor's first. Acquire (and after our acquire of this record's header, which
      // the successor published after storing successor_start): the value is current.
      const uint32_t start = l->successor_start.load(std::memory_order_acquire);
      if (seq != start || seq <= last) inc.misordered.fetch_add(1, std::memory_order_relaxed);
    }
    if (last < 0) inc.first.store(seq, std::memory_order_relaxed);
    last = seq;
    // "Processing" the message. The ledger's delivery count is what the checker reads, and
    // a kill can land between any two instructions here. So first announce "about to
    // deliver seq" (inc.last), then count the delivery: then a count is never ahead of the
    // announcement, and the checker's allowance for the unreleased tail, [the successor's
    // first, the dead one's inc.last], always covers a message the dead consumer counted.
    // (The other order made a kill between the two look like a duplicate: crash_stress
    // trial 177 of run seed 17761836846817, "duplicated: 1", consumer killed in "process".)
    // SYNC(ledger): the checker reads both only after waitpid() reaped this process, so no
    // reader runs concurrently; what must hold is the order in which the two stores are
    // performed, as seen by a SIGKILL that stops the process after any instruction. The
    // release on the count keeps the announcement before it (the compiler may not sink the
    // relaxed store below a release, and the CPU makes a store visible no later than a
    // later release store); a store the process executed before the kill reaches the
    // shared page even when the process dies right after it.
    inc.last.store(seq, std::memory_order_relaxed);
    SetPhase(l, Role::kConsumer, kAnnounced);
    die.At(kAnnounced, static_cast<uint64_t>(seq));  // announced, not yet counted
    l->deliveries[seq].fetch_add(1, std::memory_order_release);
    inc.count.fetch_add(1, std::memory_order_relaxed);
    SetPhase(l, Role::kConsumer, kProcess);
    die.At(kProcess, static_cast<uint64_t>(seq));  // counted; peeked, not released
    if (++unreleased < p.release_every && rng() % 4 != 0) {
      if (!rx->advance()) return kExitError;
      SetPhase(l, Role::kConsumer, kAdvance);
      die.At(kAdvance, static_cast<uint64_t>(seq));  // advanced past, not released
      continue;
    }
    release_upto(seq);
  }
}

Plan MakePlan(std::mt19937_64& rng) {
  Plan p;
  static constexpr uint64_t kCaps[] = {1024, 4096, 65536};
  p.capacity = kCaps[rng() % 3];
  p.messages = 100 + static_cast<uint32_t>(rng() % 8000);
  p.max_batch = 1 + static_cast<uint32_t>(rng() % 4);
  p.release_every = 1 + static_cast<uint32_t>(rng() % 4);
  p.max_size = std::min<size_t>(SpscMaxMessageSize(p.capacity), 512);
  p.producer_creates = rng() % 2 == 0;
  p.sleep_strategy = rng() % 4 == 0;
  p.victim = rng() % 2 == 0 ? Role::kProducer : Role::kConsumer;
  const uint64_t k = rng() % 20;
  p.kill = k < 8    ? KillMethod::kSelf
           : k < 15 ? KillMethod::kAsync
           : k < 19 ? KillMethod::kCpuTimer
                    : KillMethod::kNone;
  static constexpr Phase kProducerPoints[] = {kFill, kReserve, kCommitted, kClosed};
  static constexpr Phase kConsumerPoints[] = {kProcess, kAdvance, kReleased, kReaderClose,
                                              kAnnounced};
  p.self_phase =
      p.victim == Role::kProducer ? kProducerPoints[rng() % 4] : kConsumerPoints[rng() % 5];
  p.self_at = static_cast<uint32_t>(rng() % p.messages);
  // Async and CPU-timer delays are a fraction of the victim's typical loop time (learned
  // by the scenario, see RunTrial); 1/16 of them fall before the loop starts (setup,
  // create, claim) and 1/16 after it would have ended.
  p.delay_fraction = static_cast<double>(rng() % 1000) / 1000.0;
  if (rng() % 16 == 0) p.delay_fraction = -1;    // during setup
  if (rng() % 16 == 0) p.delay_fraction = 1.05;  // after the loop (close, linger, exit)
  if (p.kill != KillMethod::kSelf) p.self_at = kMaxMessages;  // disarm the kFill scribble
  // Drawn last, so that the plans above stay what they were for a given seed.
  if (p.kill == KillMethod::kAsync && rng() % 2 == 0) p.kill = KillMethod::kWatch;
  p.watch = p.victim == Role::kConsumer ? Watch::kReadPos
            : rng() % 2 == 0            ? Watch::kHeader
                                        : Watch::kWritePos;
  p.watch_at = static_cast<uint32_t>(rng() % p.messages);
  return p;
}

class SpscScenario final : public CrashScenario {
 public:
  std::string name() const override { return "spsc"; }

 private:
  // Typical loop time per role (us, moving average of trials where it ran to the end).
  double loop_us_[2] = {2000, 2000};

  void Learn(Ledger* l, int role) {
    const int64_t a = l->loop_start[role].load(), b = l->loop_end[role].load();
    if (a > 0 && b > a) loop_us_[role] = 0.8 * loop_us_[role] + 0.2 * ((b - a) / 1000.0);
  }

 public:
  TrialCounts RunTrial(const TrialOptions& o) override {
    std::mt19937_64 rng(o.seed);
    Plan p = MakePlan(rng);
    TrialCounts c;
    const std::string name = testing::UniqueShmName("crash-spsc");
    const int victim_role = p.victim == Role::kProducer ? 0 : 1;  // = its index in kids
    if (p.kill == KillMethod::kCpuTimer) {
      // Setup costs CPU too (fork, attach, /proc reads): ~300 us here.
      const double us = p.delay_fraction < 0 ? 100 : 300 + p.delay_fraction * loop_us_[victim_role];
      p.delay = microseconds(static_cast<int64_t>(us));
    }
    Ledger* l = testing::NewShared<Ledger>();
    for (auto& inc : l->inc) {
      inc.first.store(-1);
      inc.last.store(-1);
    }
    l->successor_start.store(kNoSeq);
    std::optional<SpscRing> owner;
    if (!p.producer_creates) {
      auto r = SpscRing::Create(name, p.capacity);
      if (!r) {
        std::fprintf(stderr, "spsc: create %s: %s\n", name.c_str(), r.error().message().c_str());
        c.errors++;
        testing::DeleteShared(l);
        return c;
      }
      owner.emplace(std::move(*r));
    }
    const auto trial_deadline = Clock::now() + o.deadline;
    // Tags: role * 2 + incarnation.
    enum { kProd0 = 0, kProd1 = 1, kCons0 = 2, kCons1 = 3 };
    std::vector<Child> kids(2);
    auto producer0 = [&] { return ProducerMain(name, p, l, 0, o.seed, o); };
    auto consumer0 = [&] { return ConsumerMain(name, p, l, 0, o.seed, o); };
    bool at_point = false;
    if (p.kill == KillMethod::kWatch) {
      // The other one first: the traced victim blocks this process until it is dead.
      if (victim_role == 0) {
        kids[1] = {testing::ForkChild(consumer0), kCons0};
        kids[0] = RunWatchedChild(producer0, kProd0, o.wait_bound, c, &at_point);
      } else {
        kids[0] = {testing::ForkChild(producer0), kProd0};
        kids[1] = RunWatchedChild(consumer0, kCons0, o.wait_bound, c, &at_point);
      }
    } else {
      kids[0] = {testing::ForkChild(producer0), kProd0};
      kids[1] = {testing::ForkChild(consumer0), kCons0};
    }
    const pid_t victim = kids[victim_role].pid;
    if (p.kill == KillMethod::kAsync) {
      if (p.delay_fraction >= 0) {
        // Time the kill from the start of the victim's message loop.
        AwaitOrExit(victim, std::chrono::seconds(5),
                    [&] { return l->loop_start[victim_role].load() != 0; });
        std::this_thread::sleep_for(
            microseconds(static_cast<int64_t>(p.delay_fraction * loop_us_[victim_role])));
      }
      ::kill(victim, SIGKILL);
    }
    bool killed = false;
    uint32_t victim_phase = kStart;
    // The dead producer's ledger at its death (its successor writes the same words).
    uint32_t committed = 0, reserved = 0, committing = 0;
    int status[4] = {0, 0, 0, 0};
    bool ran[4] = {true, false, true, false};
    Supervise(kids, trial_deadline, c, [&](size_t i) {
      const Child k = kids[i];  // a copy: push_back below may reallocate
      status[k.tag] = k.status;
      if (k.tag == kProd0) {
        committed = l->committed.load();
        reserved = l->reserved.load();
        committing = l->committing.load();
      }
      if (k.pid != victim) {
        if (k.tag == kProd0 || k.tag == kProd1) {
          // The last producer is gone. Release: pairs with the consumer's acquire.
          l->no_more_producers.store(1, std::memory_order_release);
        }
        return;
      }
      killed = KilledBySigkill(k.status);
      // The victim's last phase, read before a successor writes the same word.
      victim_phase = l->phase[victim_role].load();
      if (!killed) {
        Learn(l, victim_role);
        if (k.tag == kProd0) l->no_more_producers.store(1, std::memory_order_release);
        return;
      }
      // Killed right after publishing a batch's header, before write_pos: let the consumer
      // read (and release) the batch first, so that the successor finds read_pos past
      // write_pos - the harder of the two orders, made deterministic.
      if (k.tag == kProd0 && at_point && p.watch == Watch::kHeader && committing > 0) {
        const int64_t want = static_cast<int64_t>(committing) - 1;
        AwaitOrExit(kids[1].pid, std::chrono::seconds(2),
                    [&] { return l->inc[0].released_upto.load() > want; });
      }
      // A successor takes the killed process's role over and finishes the stream.
      const int tag = k.tag + 1;
      ran[tag] = true;
      if (tag == kProd1) {
        kids.push_back(
            {testing::ForkChild([&] { return ProducerMain(name, p, l, 1, o.seed, o); }), tag});
      } else {
        kids.push_back(
            {testing::ForkChild([&] { return ConsumerMain(name, p, l, 1, o.seed, o); }), tag});
      }
    });
    if (killed) {
      c.kills++;
      c.kill_phases[std::string(victim_role == 0 ? "producer:" : "consumer:") +
                    (at_point ? WatchName(p.watch) : PhaseName(kPhaseNames, victim_phase))]++;
    }
    if (l->watch_unavailable.load()) c.kill_phases["spsc:watch_unavailable"]++;
    c.takeovers += l->takeovers.load();

    // ---- exit statuses against the semantics (-1: overran the deadline, already counted)
    const bool producer_killed = p.victim == Role::kProducer && killed;
    const bool consumer_killed = p.victim == Role::kConsumer && killed;
    auto code = [&](int tag) { return status[tag] == -1 ? -1 : testing::ExitCodeOf(status[tag]); };
    auto bad = [&](const char* who, int e) {
      std::fprintf(stderr, "spsc: %s exit %d (victim %s, %s, killed %d, phase %s, seed %llu)\n",
                   who, e, p.victim == Role::kProducer ? "producer" : "consumer",
                   KillMethodName(p.kill), killed, PhaseName(kPhaseNames, victim_phase),
                   (unsigned long long)o.seed);
      (e == kExitHang ? c.hangs : c.errors)++;
    };
    // Producers: the survivor or successor closes the stream normally; a successor finds it
    // closed if its predecessor had closed it, or no ring if the dead creator left none.
    const int prod_final = producer_killed ? kProd1 : kProd0;
    const int pe = code(prod_final);
    const bool dead_had_closed =
        producer_killed &&
        (victim_phase == kClose || victim_phase == kClosed || victim_phase == kDone);
    const bool no_ring = producer_killed && pe == kExitNoRing && p.producer_creates;
    if (pe != -1 && !(pe == kExitOk || (pe == kExitClosed && dead_had_closed) || no_ring)) {
      bad(producer_killed ? "successor producer" : "producer", pe);
    }
    if (no_ring) c.kill_phases["spsc:unpublished_segment_no_successor"]++;
    const int cons_final = consumer_killed ? kCons1 : kCons0;
    if (const int ce = code(cons_final); ce != -1) {
      bool ok = ce == kExitOk;
      // Nobody to take over from: the dead creator left no ring, or never claimed; or the
      // last producer failed (counted above): the stream ended without a close.
      if (no_ring || (pe != kExitOk && pe != kExitClosed)) {
        ok = ce == kExitNoRing || ce == kExitNoProducer || ce == kExitPeerDead;
      }
      // A consumer killed after its own close(): the stream was complete; the replacement
      // finds the ring gone (its creator exited) or closed.
      if (consumer_killed && (victim_phase == kReaderClose || victim_phase == kDone) &&
          ce == kExitNoRing) {
        ok = true;
      }
      if (!ok) bad(consumer_killed ? "successor consumer" : "consumer", ce);
    }

    // ---- message accounting
    // Every message of the stream must be delivered, except those the dead producer had
    // reserved and not committed: they lie in [its last logged commit, its successor's
    // first seq), where each is delivered at most once (exactly once up to what it had
    // committed; the ledger's commit count may lag its real commit by one batch).
    const uint32_t successor_start = l->successor_start.load();
    const bool stream_resumed = producer_killed && successor_start != kNoSeq && pe == kExitOk;
    if (!producer_killed) committed = reserved = l->committed.load();
    // Killed inside commit() right after the batch's header word (or write_pos): the whole
    // batch was published, so all of it must be delivered, exactly once.
    if (producer_killed && at_point) committed = std::max(committed, committing);
    auto must_deliver = [&](uint32_t s) {
      if (!producer_killed) return s < p.messages;
      return s < committed || (stream_resumed && s >= successor_start && s < p.messages);
    };
    if (producer_killed && stream_resumed && successor_start != reserved) {
      std::fprintf(stderr, "spsc: successor started at %u, dead producer wrote %u\n",
                   successor_start, reserved);
      c.errors++;
    }
    auto& i0 = l->inc[0];
    auto& i1 = l->inc[1];
    // Duplicates the semantics allow: after a consumer kill, the replacement restarts at
    // the last release, so seqs in [its first, the dead one's last] come again - but
    // never anything the dead consumer had released.
    int64_t dup_lo = 1, dup_hi = 0;  // empty
    if (ran[kCons1] && i1.first.load() >= 0) {
      dup_lo = i1.first.load();
      dup_hi = i0.last.load();
      if (dup_lo < static_cast<int64_t>(i0.released_upto.load())) {
        std::fprintf(stderr, "spsc: replacement restarted at %lld, before the release at %u\n",
                     (long long)dup_lo, i0.released_upto.load());
        c.duplicated += i0.released_upto.load() - dup_lo;
        dup_lo = i0.released_upto.load();
      }
      // Killed right after release() stored read_pos: everything it had announced was
      // released, so its successor starts right after it (no redelivery).
      if (consumer_killed && at_point && dup_lo != dup_hi + 1) {
        std::fprintf(stderr,
                     "spsc: after a kill at read_pos the successor started at %lld, "
                     "the dead consumer's last was %lld\n",
                     (long long)dup_lo, (long long)dup_hi);
        c.duplicated += dup_lo <= dup_hi ? dup_hi - dup_lo + 1 : 0;
        dup_lo = 1, dup_hi = 0;
      }
      // The unreleased tail is at most one release batch (plus the peeked message).
      if (dup_hi - dup_lo + 1 > static_cast<int64_t>(p.release_every) + 1) {
        std::fprintf(stderr, "spsc: %lld redelivered, more than a release batch\n",
                     (long long)(dup_hi - dup_lo + 1));
        c.duplicated++;
      }
    }
    const uint32_t written = l->reserved.load();  // by any producer
    for (uint32_t s = 0; s < kMaxMessages; ++s) {
      // Acquire: pairs with the consumer's release increment (see ConsumerMain).
      const uint32_t d = l->deliveries[s].load(std::memory_order_acquire);
      c.messages += d;
      if (must_deliver(s) && d == 0) c.lost++;
      if (d > 1) {
        if (static_cast<int64_t>(s) >= dup_lo && static_cast<int64_t>(s) <= dup_hi && d == 2) {
          c.redelivered++;
        } else {
          c.duplicated += d - 1;
        }
      }
      if (d > 0 && s >= written) c.corrupt++;  // delivered a message never written
      // Killed by itself with reservations pending (the ledger's commit count is exact
      // then): a reserved but uncommitted message must never be delivered.
      if (d > 0 && s >= committed && s < reserved && producer_killed &&
          p.kill == KillMethod::kSelf && (p.self_phase == kFill || p.self_phase == kReserve)) {
        c.corrupt++;
      }
    }
    c.misordered += i0.misordered.load() + i1.misordered.load();
    c.corrupt += i0.corrupt.load() + i1.corrupt.load();
    if (c.lost && o.verbose) {
      std::fprintf(stderr, "spsc: lost %llu (committed %u reserved %u successor %u messages %u)\n",
                   (unsigned long long)c.lost, committed, reserved, successor_start, p.messages);
    }

    // ---- files: the creator's handle unlinks; a dead creator's segment is reclaimed
    owner.reset();
    if (testing::ShmExists(name)) {
      if (p.producer_creates && producer_killed) {
        // The documented recovery: a new creator reclaims a segment whose creator and
        // role holders are all dead.
        auto again = SpscRing::Create(name, p.capacity);
        if (!again) {
          auto probe = SpscRing::Attach(name);
          if (!probe &&
              (probe.error() == RingErrc::kNotReady || probe.error() == RingErrc::kTruncated)) {
            // Killed inside Create before the header was published: no creator identity
            // to judge by, so it is not reclaimable automatically (documented gap).
            c.kill_phases["spsc:unpublished_segment_removed"]++;
          } else {
            std::fprintf(stderr, "spsc: stale segment not reclaimed: %s\n",
                         again.error().message().c_str());
            c.leaked++;
          }
          ::shm_unlink(name.c_str());
        }
      } else {
        c.leaked++;
        ::shm_unlink(name.c_str());
      }
    }
    if (testing::ShmExists(name)) {
      c.leaked++;
      ::shm_unlink(name.c_str());
    }
    if (o.verbose) {
      std::fprintf(
          stderr,
          "spsc seed=%llu victim=%s kill=%s phase=%s at=%u killed=%d cap=%llu n=%u "
          "committed=%u delivered=%llu\n",
          (unsigned long long)o.seed, p.victim == Role::kProducer ? "producer" : "consumer",
          KillMethodName(p.kill),
          p.kill == KillMethod::kWatch ? WatchName(p.watch) : PhaseName(kPhaseNames, p.self_phase),
          p.kill == KillMethod::kWatch ? p.watch_at : p.self_at, killed,
          (unsigned long long)p.capacity, p.messages, committed, (unsigned long long)c.messages);
    }
    testing::DeleteShared(l);
    return c;
  }
};

}  // namespace

std::unique_ptr<CrashScenario> MakeSpscScenario() { return std::make_unique<SpscScenario>(); }

}  // namespace shmlink::reliability
