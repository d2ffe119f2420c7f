// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Crash scenario for Topic (block policy): one publisher process and 2-3 subscriber
// processes, all subscribed before the first message; one of them SIGKILLed at a named
// point (publisher: holding a loan, or just after publish; subscriber: holding a received
// message, or just after release), asynchronously, or by a CPU-time timer. Semantics
// checked (topic.h, topic_publisher.h, topic_subscriber.h):
//
//  - a killed subscriber stops holding the publisher back: the stream goes on; a successor
//    subscriber (a new process) joins mid-stream and receives, in order, every message
//    published after it joined, up to the end;
//  - a killed publisher: subscribers drain what it published, then see kPeerDead; a
//    successor publisher (a new process) takes the role over and continues with the next
//    sequence number - never below what was published, never skipping one;
//  - every surviving subscriber receives every message 0 .. total-1 exactly once, in
//    order, intact, then kClosed;
//  - nothing waits unboundedly, and the topic's name is gone once its creator is.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "tests/kill_on_write.h"
#include "tests/reliability/crash_scenario.h"
#include "tests/test_util.h"

#include <shmlink/topic.h>
#include <shmlink/topic_layout.h>

namespace shmlink::reliability {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr int kMaxSubs = 3;
constexpr int kReplacement = kMaxSubs;  // subscriber index of a killed one's successor

enum Phase : uint32_t {
  kStart = 0,
  kLoaned,     // publisher: holds a loan, message written, not yet published
  kPublished,  // publisher: publish() returned, ledger not yet updated
  kHolding,    // subscriber: received a message, not yet released
  kReleased,   // subscriber: release() returned
  kDone,
  kPhaseCount
};
const char* const kPhaseNames[kPhaseCount] = {"start",   "loaned",        "after_publish",
                                              "holding", "after_release", "done"};

struct Plan {
  int subscribers = 2;
  uint64_t total = 1000;
  uint64_t capacity = 4096;
  bool victim_is_publisher = true;
  int victim_index = 0;
  KillMethod kill = KillMethod::kNone;
  Phase self_phase = kLoaned;
  uint64_t self_at = 0;
  double delay_fraction = 0;
  microseconds cpu{0};
  uint64_t watch_at = 0;  // kWatch: the publisher is killed publishing this seq
};

struct Ledger {
  std::atomic<uint32_t> joined[kMaxSubs + 1];
  std::atomic<uint32_t> phase[2 + kMaxSubs];  // [0] publisher, [1 + i] subscriber i
  std::atomic<int64_t> loop_start[2 + kMaxSubs];
  std::atomic<uint64_t> published;  // publish() returned for [0, n) (any publisher)
  std::atomic<uint64_t> received[kMaxSubs + 1];
  // The replacement subscriber: `published` read right after it joined, and the first and
  // last seq it received (first kNone: none).
  std::atomic<uint64_t> joined_at;
  std::atomic<uint64_t> first;
  std::atomic<uint64_t> last;
  std::atomic<uint32_t> takeovers;  // successors that took a role over
  std::atomic<uint32_t> misordered;
  std::atomic<uint32_t> corrupt;
  std::atomic<uint32_t> bad_resume;         // a successor's next sequence was not the next one
  std::atomic<uint64_t> successor_next;     // the successor publisher's next_sequence()
  std::atomic<uint32_t> watch_unavailable;  // KillOnWrite could not arm (not x86-64)
  std::atomic<uint32_t> watch_padded;       // the watched commit word was a padding word
};

enum Exit : int { kExitOk = 0, kExitHang = 10, kExitError = 11 };

struct Proc {
  const Plan& p;
  Ledger* l;
  int slot;  // 0 publisher, 1 + i subscriber i
  bool victim;
  void Set(Phase ph) const { l->phase[slot].store(ph, std::memory_order_relaxed); }
  void Die(Phase ph, uint64_t seq) const {
    if (victim && p.kill == KillMethod::kSelf && ph == p.self_phase && seq >= p.self_at) {
      ::raise(SIGKILL);
    }
  }
};

int PublisherMain(const std::string& name, const Plan& p, Ledger* l, bool successor,
                  const TrialOptions& o) {
  const Proc me{p, l, 0, !successor && p.victim_is_publisher};
  if (me.victim && p.kill == KillMethod::kCpuTimer) ArmCpuKillTimer(p.cpu);
  auto t = Topic::Attach(name);
  if (!t) return kExitError;
  auto pub = t->Publisher();
  if (!pub) {
    std::fprintf(stderr, "topic: publisher: %s\n", pub.error().message().c_str());
    return kExitError;
  }
  // A successor resumes exactly after the last published message (the ledger may be one
  // behind if the predecessor died between publish() and the ledger update).
  if (successor) l->takeovers.fetch_add(1);
  const uint64_t next = pub->next_sequence();
  const uint64_t logged = l->published.load();
  if (next < logged || next > logged + 1) l->bad_resume.fetch_add(1);
  if (successor) l->successor_next.store(next);
  std::optional<TopicRegion> region;  // kWatch: where the log lives in our mapping
  if (me.victim && p.kill == KillMethod::kWatch) {
    auto g = ValidateTopicSegment(t->segment());
    if (!g) return kExitError;
    region = TopicRegionOf(t->segment(), *g);
  }
  l->loop_start[0].store(NowNs());
  WaitOptions w = WaitOptions::WithTimeout(o.wait_bound);
  w.liveness_check = milliseconds(5);
  for (uint64_t seq = next; seq < p.total; ++seq) {
    auto buf = pub->loan(kSeqMessageMin + seq % 200, w);
    if (!buf) {
      std::fprintf(stderr, "topic: loan: %s\n", buf.error().message().c_str());
      return buf.error() == RingErrc::kTimedOut ? kExitHang : kExitError;
    }
    WriteSeqMessage(*buf, seq);
    if (region && seq == p.watch_at) {
      // Killed right after publish() stores the word that commits this record: its seq
      // word, or the padding word before it when the record wrapped to the log's start
      // (then the data word is stored first, relaxed, and the padding word publishes both).
      const uint64_t mask = region->geometry.capacity - 1;
      // Relaxed: our own last store (the publisher is the only writer of tail_pos).
      const uint64_t tail = region->control->tail_pos.load(std::memory_order_relaxed);
      std::byte* rec = buf->data() - kTopicRecordHeaderSize;
      std::byte* at_tail = region->data + (tail & mask);
      const bool padded = rec != at_tail;
      l->watch_padded.store(padded ? 1 : 0);
      const uint64_t word = TopicWord(padded ? kTopicKindPadding : kTopicKindData, seq);
      if (!testing::KillOnWrite(padded ? at_tail : rec, ~uint64_t{0}, word)) {
        l->watch_unavailable.store(1);
      }
    }
    me.Set(kLoaned);
    me.Die(kLoaned, seq);
    auto s = pub->publish();
    if (!s || *s != seq) {
      std::fprintf(stderr, "topic: publish of %llu failed\n", static_cast<unsigned long long>(seq));
      return kExitError;
    }
    me.Set(kPublished);
    me.Die(kPublished, seq);
    l->published.store(seq + 1);
  }
  pub->close();
  me.Set(kDone);
  return kExitOk;
}

int SubscriberMain(const std::string& name, const Plan& p, Ledger* l, int index,
                   const TrialOptions& o) {
  const Proc me{p, l, 1 + index, !p.victim_is_publisher && p.victim_index == index};
  const bool successor = index == kReplacement;
  if (me.victim && p.kill == KillMethod::kCpuTimer) ArmCpuKillTimer(p.cpu);
  auto t = Topic::Attach(name);
  if (!t) return kExitError;
  auto sub = t->Subscriber();
  if (!sub) {
    std::fprintf(stderr, "topic: subscribe: %s\n", sub.error().message().c_str());
    return kExitError;
  }
  l->joined[index].store(1);
  if (successor) {
    // Everything published from here on must reach us.
    l->joined_at.store(l->published.load());
    l->takeovers.fetch_add(1);
  }
  l->loop_start[1 + index].store(NowNs());
  WaitOptions w = WaitOptions::WithTimeout(milliseconds(50));
  w.liveness_check = milliseconds(5);
  auto last_progress = Clock::now();
  uint64_t expect = 0;
  bool first = true;
  for (;;) {
    auto m = sub->receive(w);
    if (!m) {
      if (m.error() == RingErrc::kClosed) break;
      // kPeerDead: the publisher died; its successor will come. kTimedOut: slow peers.
      if (m.error() != RingErrc::kPeerDead && m.error() != RingErrc::kTimedOut) {
        std::fprintf(stderr, "topic: subscriber %d: receive: %s\n", index,
                     m.error().message().c_str());
        return kExitError;
      }
      if (Clock::now() - last_progress > o.wait_bound) return kExitHang;
      if (m.error() == RingErrc::kPeerDead) std::this_thread::sleep_for(milliseconds(1));
      continue;
    }
    last_progress = Clock::now();
    me.Set(kHolding);
    me.Die(kHolding, expect);
    const int64_t seq = ReadSeqMessage(m->data, p.total);
    if (seq < 0 || static_cast<uint64_t>(seq) != m->seq) l->corrupt.fetch_add(1);
    // A successor joins mid-stream: its first message may be any; then consecutive.
    if (successor && first) {
      l->first.store(m->seq);
      expect = m->seq;
    }
    first = false;
    if (m->seq != expect) l->misordered.fetch_add(1);
    expect = m->seq + 1;
    if (successor) l->last.store(m->seq);
    l->received[index].fetch_add(1);
    if (auto r = sub->release(); !r) {
      std::fprintf(stderr, "topic: subscriber %d: release: %s\n", index,
                   r.error().message().c_str());
      return kExitError;
    }
    me.Set(kReleased);
    me.Die(kReleased, expect);
  }
  me.Set(kDone);
  return kExitOk;
}

Plan MakePlan(std::mt19937_64& rng) {
  Plan p;
  p.subscribers = 2 + static_cast<int>(rng() % 2);
  p.total = 100 + rng() % 3000;
  p.capacity = uint64_t{4096} << (rng() % 3);
  p.victim_is_publisher = rng() % 2 == 0;
  p.victim_index = static_cast<int>(rng() % p.subscribers);
  const uint64_t k = rng() % 20;
  p.kill = k < 8    ? KillMethod::kSelf
           : k < 16 ? KillMethod::kAsync
           : k < 19 ? KillMethod::kCpuTimer
                    : KillMethod::kNone;
  p.self_phase = p.victim_is_publisher ? (rng() % 2 ? kLoaned : kPublished)
                                       : (rng() % 2 ? kHolding : kReleased);
  p.self_at = rng() % p.total;
  p.delay_fraction = static_cast<double>(rng() % 1000) / 1000.0;
  p.cpu = microseconds(200 + rng() % 3000);
  // Drawn last, so that the plans above stay what they were for a given seed. Only the
  // publisher is watched (its commit word); a subscriber victim stays asynchronous.
  if (p.kill == KillMethod::kAsync && p.victim_is_publisher && rng() % 2 == 0) {
    p.kill = KillMethod::kWatch;
  }
  p.watch_at = rng() % p.total;
  return p;
}

class TopicScenario final : public CrashScenario {
 public:
  std::string name() const override { return "topic"; }

  TrialCounts RunTrial(const TrialOptions& o) override {
    std::mt19937_64 rng(o.seed);
    const Plan p = MakePlan(rng);
    TrialCounts c;
    const std::string name = testing::UniqueShmName("crash-topic");
    Ledger* l = testing::NewShared<Ledger>();
    std::optional<Topic> topic;
    {
      TopicOptions opts;
      opts.capacity = p.capacity;
      opts.max_message_size = 256;
      opts.policy = TopicPolicy::kBlock;
      auto r = Topic::Create(name, opts);
      if (!r) {
        std::fprintf(stderr, "topic: create: %s\n", r.error().message().c_str());
        c.errors++;
        testing::DeleteShared(l);
        return c;
      }
      topic.emplace(std::move(*r));
    }
    const auto trial_deadline = Clock::now() + o.deadline;
    pid_t subs[kMaxSubs] = {};
    for (int i = 0; i < p.subscribers; ++i) {
      subs[i] = testing::ForkChild([&] { return SubscriberMain(name, p, l, i, o); });
    }
    // Everyone subscribed before the first message: each must then receive all of them.
    // A subscriber killed while joining never joins: wait for each to join or to exit
    // (promptly: the others' no-progress bound runs meanwhile).
    auto all_settled = [&] {
      for (int i = 0; i < p.subscribers; ++i) {
        if (l->joined[i].load() == 0 && !testing::HasExited(subs[i])) return false;
      }
      return true;
    };
    for (const auto until = Clock::now() + o.wait_bound; !all_settled() && Clock::now() < until;) {
      std::this_thread::sleep_for(microseconds(100));
    }
    const auto t0 = Clock::now();
    // Tags: 0 publisher, 1 + i subscriber i; successors: kSuccessorPublisher and
    // 1 + kReplacement.
    constexpr int kSuccessorPublisher = 100;
    std::vector<Child> kids;
    for (int i = 0; i < p.subscribers; ++i) kids.push_back({subs[i], 1 + i});
    bool at_point = false;
    if (p.kill == KillMethod::kWatch) {
      // Traced: blocks this process until the publisher is dead or done.
      kids.push_back(RunWatchedChild([&] { return PublisherMain(name, p, l, false, o); }, 0,
                                     o.wait_bound, c, &at_point));
    } else {
      kids.push_back({testing::ForkChild([&] { return PublisherMain(name, p, l, false, o); }), 0});
    }
    const pid_t pub = kids.back().pid;
    const pid_t victim = p.victim_is_publisher ? pub : subs[p.victim_index];
    const int vslot = p.victim_is_publisher ? 0 : 1 + p.victim_index;
    if (p.kill == KillMethod::kAsync) {
      AwaitOrExit(victim, std::chrono::seconds(5),
                  [&] { return l->loop_start[vslot].load() != 0; });
      std::this_thread::sleep_for(microseconds(static_cast<int64_t>(p.delay_fraction * loop_us_)));
      ::kill(victim, SIGKILL);
    }
    bool killed = false;
    bool replaced_subscriber = false;
    uint32_t victim_phase = 0;
    Supervise(kids, trial_deadline, c, [&](size_t i) {
      const Child k = kids[i];  // a copy: push_back below may reallocate
      if (k.tag == 0 || k.tag == kSuccessorPublisher) {
        loop_us_ = 0.8 * loop_us_ +
                   0.2 * std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      }
      if (k.status == -1) return;  // overran the deadline: counted as a hang
      if (k.pid == victim) {
        killed = KilledBySigkill(k.status);
        victim_phase = l->phase[vslot].load();
        if (killed) {
          // A successor takes the dead process's role over and finishes the stream.
          if (p.victim_is_publisher) {
            kids.push_back({testing::ForkChild([&] { return PublisherMain(name, p, l, true, o); }),
                            kSuccessorPublisher});
          } else {
            replaced_subscriber = true;
            kids.push_back(
                {testing::ForkChild([&] { return SubscriberMain(name, p, l, kReplacement, o); }),
                 1 + kReplacement});
          }
          return;
        }
      }
      const int code = testing::ExitCodeOf(k.status);
      if (code != kExitOk) {
        std::fprintf(stderr, "topic: %s (tag %d) exit %d (victim %s %d, %s, seed %llu)\n",
                     k.pid == victim ? "victim" : "survivor", k.tag, code,
                     p.victim_is_publisher ? "publisher" : "subscriber", p.victim_index,
                     KillMethodName(p.kill), (unsigned long long)o.seed);
        (code == kExitHang ? c.hangs : c.errors)++;
      }
    });
    if (killed) {
      c.kills++;
      c.kill_phases[std::string(p.victim_is_publisher ? "topic-publisher:" : "topic-subscriber:") +
                    (at_point ? (l->watch_padded.load() ? "at_padding_word" : "at_seq_word")
                              : PhaseName(kPhaseNames, victim_phase))]++;
    }
    if (l->watch_unavailable.load()) c.kill_phases["topic:watch_unavailable"]++;
    // Killed right after the word that commits message watch_at: it was published, so the
    // successor resumes exactly after it (and every subscriber receives it: checked below).
    if (killed && at_point && l->successor_next.load() != p.watch_at + 1) {
      std::fprintf(stderr, "topic: publisher killed committing %llu, successor resumed at %llu\n",
                   (unsigned long long)p.watch_at, (unsigned long long)l->successor_next.load());
      c.errors++;
    }
    c.takeovers += l->takeovers.load();

    // ---- accounting: every survivor got exactly [0, total), in order, intact.
    for (int i = 0; i < p.subscribers; ++i) {
      const uint64_t got = l->received[i].load();
      c.messages += got;
      if (killed && !p.victim_is_publisher && i == p.victim_index) continue;
      if (got < p.total) c.lost += p.total - got;
      if (got > p.total) c.duplicated += got - p.total;
    }
    if (replaced_subscriber) {
      // The successor subscriber: consecutive (checked as it received), from at most the
      // first message published after it joined to the last one.
      const uint64_t got = l->received[kReplacement].load();
      c.messages += got;
      const uint64_t must_from = std::min<uint64_t>(l->joined_at.load() + 1, p.total);
      const uint64_t from = got == 0 ? p.total : l->first.load();
      const uint64_t to = got == 0 ? p.total : l->last.load() + 1;
      if (from > must_from) c.lost += from - must_from;
      if (to < p.total) c.lost += p.total - to;
      if (got > to - from) c.duplicated += got - (to - from);
    }
    c.misordered += l->misordered.load();
    c.corrupt += l->corrupt.load();
    c.errors += l->bad_resume.load();

    topic.reset();  // creator: kUnlinkOnDestroy
    if (testing::ShmExists(name)) {
      c.leaked++;
      ::shm_unlink(name.c_str());
    }
    if (o.verbose) {
      std::fprintf(
          stderr, "topic seed=%llu S=%d n=%llu cap=%llu victim=%s%d kill=%s killed=%d phase=%s\n",
          (unsigned long long)o.seed, p.subscribers, (unsigned long long)p.total,
          (unsigned long long)p.capacity, p.victim_is_publisher ? "P" : "S", p.victim_index,
          KillMethodName(p.kill), killed, PhaseName(kPhaseNames, victim_phase));
    }
    testing::DeleteShared(l);
    return c;
  }

 private:
  double loop_us_ = 5000;
};

}  // namespace

std::unique_ptr<CrashScenario> MakeTopicScenario() { return std::make_unique<TopicScenario>(); }

}  // namespace shmlink::reliability
