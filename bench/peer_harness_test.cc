// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The peer harness over real processes and real pipes: a good channel yields a complete
// record; a channel that loses a message, a side that cannot build its endpoint, and a side
// that fails mid-run each yield an error record (and return promptly) instead of a figure.
#include "bench/peer_harness.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <new>

#include "gtest/gtest.h"

namespace shmlink::bench {
namespace {

BenchConfig TinyConfig() {
  BenchConfig cfg;
  cfg.quick = true;
  cfg.reps = 2;
  cfg.seconds_per_rep = 0.02;
  return cfg;
}

// A pipe-based case (B -> A for throughput; both ways for RTT), optionally wrapping side
// B's endpoint.
PeerCase PipeCase(Pattern pattern, size_t size,
                  std::function<std::unique_ptr<Endpoint>(std::unique_ptr<Endpoint>)> wrap_b = {}) {
  int ab[2], ba[2];
  EXPECT_EQ(pipe(ab), 0);
  EXPECT_EQ(pipe(ba), 0);
  PeerCase c;
  c.system = "pipe";
  c.pattern = pattern;
  c.size = size;
  c.make = [=](Side side, Pattern, size_t, std::string*) -> std::unique_ptr<Endpoint> {
    if (side == Side::kA) {
      close(ba[1]);
      close(ab[0]);
      return MakeFdEndpoint(ba[0], ab[1]);
    }
    close(ba[0]);
    close(ab[1]);
    auto ep = MakeFdEndpoint(ab[0], ba[1]);
    return wrap_b ? wrap_b(std::move(ep)) : std::move(ep);
  };
  c.after_fork = [=] {
    for (int fd : {ab[0], ab[1], ba[0], ba[1]}) close(fd);
  };
  return c;
}

// Forwards to an inner endpoint, dropping the `drop_at`-th send or failing at the
// `fail_at`-th send.
class FaultyEndpoint final : public Endpoint {
 public:
  FaultyEndpoint(std::unique_ptr<Endpoint> inner, int drop_at, int fail_at)
      : inner_(std::move(inner)), drop_at_(drop_at), fail_at_(fail_at) {}
  bool Send(const std::byte* p, size_t n, std::string* err) override {
    ++sends_;
    if (sends_ == fail_at_) {
      *err = "injected send failure";
      return false;
    }
    if (sends_ == drop_at_) return true;  // silently lost
    return inner_->Send(p, n, err);
  }
  bool Recv(size_t n, uint64_t* tag, std::string* err) override {
    return inner_->Recv(n, tag, err);
  }

 private:
  std::unique_ptr<Endpoint> inner_;
  int drop_at_, fail_at_, sends_ = 0;
};

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST(PeerHarness, ThroughputOverAPipeGivesACompleteRecord) {
  const BenchConfig cfg = TinyConfig();
  BenchRecord r = RunPeerCase(cfg, PipeCase(Pattern::kThroughput, 64));
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.pattern, "throughput");
  ASSERT_TRUE(r.msgs_per_s && r.bytes_per_s);
  EXPECT_GT(*r.msgs_per_s, 0);
  EXPECT_DOUBLE_EQ(*r.bytes_per_s, *r.msgs_per_s * 64);
  EXPECT_EQ(r.reps, 2);
  EXPECT_LE(r.extra.at("msgs_per_s_min"), *r.msgs_per_s);
  EXPECT_GE(r.extra.at("msgs_per_s_max"), *r.msgs_per_s);
}

TEST(PeerHarness, RttOverPipesGivesOrderedPercentiles) {
  BenchRecord r = RunPeerCase(TinyConfig(), PipeCase(Pattern::kRtt, 4096));
  ASSERT_EQ(r.error, "");
  ASSERT_TRUE(r.p50_ns && r.p99_ns && r.p999_ns);
  EXPECT_GT(*r.p50_ns, 0);
  EXPECT_LE(*r.p50_ns, *r.p99_ns);
  EXPECT_LE(*r.p99_ns, *r.p999_ns);
}

TEST(PeerHarness, ALostMessageFailsTheCase) {
  PeerCase c = PipeCase(Pattern::kThroughput, 64, [](std::unique_ptr<Endpoint> ep) {
    return std::make_unique<FaultyEndpoint>(std::move(ep), /*drop_at=*/100, /*fail_at=*/-1);
  });
  BenchRecord r = RunPeerCase(TinyConfig(), c);
  EXPECT_NE(r.error.find("lost, duplicated or reordered"), std::string::npos) << r.error;
  EXPECT_FALSE(r.msgs_per_s.has_value());
}

TEST(PeerHarness, AnEchoThatNeverComesBackFailsTheCase) {
  PeerCase c = PipeCase(Pattern::kRtt, 64, [](std::unique_ptr<Endpoint> ep) {
    return std::make_unique<FaultyEndpoint>(std::move(ep), /*drop_at=*/50, /*fail_at=*/-1);
  });
  // B drops its 50th echo: A waits for it forever; B then also blocks. Only the
  // supervisor's deadline ends the case.
  c.timeout_s = 3;
  const auto t0 = std::chrono::steady_clock::now();
  BenchRecord r = RunPeerCase(TinyConfig(), c);
  EXPECT_NE(r.error.find("timed out"), std::string::npos) << r.error;
  EXPECT_LT(Seconds(t0), 15);
}

TEST(PeerHarness, AFailingSideIsReportedPromptly) {
  PeerCase c = PipeCase(Pattern::kThroughput, 64, [](std::unique_ptr<Endpoint> ep) {
    return std::make_unique<FaultyEndpoint>(std::move(ep), -1, /*fail_at=*/10);
  });
  const auto t0 = std::chrono::steady_clock::now();
  BenchRecord r = RunPeerCase(TinyConfig(), c);
  EXPECT_NE(r.error.find("B: injected send failure"), std::string::npos) << r.error;
  EXPECT_LT(Seconds(t0), 10);  // A blocks in read; the supervisor ends it ~2 s later
}

TEST(PeerHarness, AnEndpointThatCannotBeBuiltIsAnError) {
  PeerCase c = PipeCase(Pattern::kRtt, 64);
  auto inner = c.make;
  c.make = [inner](Side side, Pattern p, size_t n, std::string* err) -> std::unique_ptr<Endpoint> {
    if (side == Side::kB) {
      *err = "no such service";
      return nullptr;
    }
    return inner(side, p, n, err);
  };
  const auto t0 = std::chrono::steady_clock::now();
  BenchRecord r = RunPeerCase(TinyConfig(), c);
  EXPECT_NE(r.error.find("B: no such service"), std::string::npos) << r.error;
  EXPECT_LT(Seconds(t0), 10);
}

// True once `pid` no longer runs (gone, or a zombie waiting for its new parent to reap it).
bool Ended(pid_t pid) {
  for (int i = 0; i < 200; ++i) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) return true;
    const size_t close_paren = line.rfind(')');
    if (close_paren != std::string::npos && line.size() > close_paren + 2 &&
        line[close_paren + 2] == 'Z') {
      return true;
    }
    usleep(10000);
  }
  return false;
}

TEST(PeerHarness, ASideThatDiesAbruptlyTakesItsPeerWithIt) {
  // B publishes its pid here; from its 30th send on it hangs (like a peer stuck in a wait
  // that nothing will end), so only the harness can end it once A is gone.
  auto* b_pid = static_cast<std::atomic<pid_t>*>(mmap(nullptr, sizeof(std::atomic<pid_t>),
                                                      PROT_READ | PROT_WRITE,
                                                      MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(b_pid, MAP_FAILED);
  new (b_pid) std::atomic<pid_t>(0);
  PeerCase c = PipeCase(Pattern::kThroughput, 64, [b_pid](std::unique_ptr<Endpoint> ep) {
    b_pid->store(getpid());
    class HangingWriter final : public Endpoint {
     public:
      explicit HangingWriter(std::unique_ptr<Endpoint> e) : e_(std::move(e)) {}
      bool Send(const std::byte* q, size_t k, std::string* e) override {
        if (++n_ >= 30) {
          for (;;) pause();
        }
        return e_->Send(q, k, e);
      }
      bool Recv(size_t k, uint64_t* tag, std::string* e) override { return e_->Recv(k, tag, e); }

     private:
      std::unique_ptr<Endpoint> e_;
      int n_ = 0;
    };
    return std::make_unique<HangingWriter>(std::move(ep));
  });
  auto inner = c.make;
  c.make = [inner](Side side, Pattern p, size_t n, std::string* err) -> std::unique_ptr<Endpoint> {
    auto ep = inner(side, p, n, err);
    if (side == Side::kA) {
      class DyingReader final : public Endpoint {
       public:
        explicit DyingReader(std::unique_ptr<Endpoint> e) : e_(std::move(e)) {}
        bool Send(const std::byte* q, size_t k, std::string* e) override {
          return e_->Send(q, k, e);
        }
        bool Recv(size_t k, uint64_t* tag, std::string* e) override {
          if (++n_ == 20) _exit(3);  // no error report, no waiting for B
          return e_->Recv(k, tag, e);
        }

       private:
        std::unique_ptr<Endpoint> e_;
        int n_ = 0;
      };
      return std::make_unique<DyingReader>(std::move(ep));
    }
    return ep;
  };
  c.timeout_s = 30;
  const auto t0 = std::chrono::steady_clock::now();
  BenchRecord r = RunPeerCase(TinyConfig(), c);
  EXPECT_NE(r.error.find("side A's process ended with status"), std::string::npos) << r.error;
  EXPECT_LT(Seconds(t0), 10);  // not the 30 s deadline
  const pid_t b = b_pid->load();
  ASSERT_GT(b, 0);
  EXPECT_TRUE(Ended(b)) << "B (pid " << b << ") outlived its case";
  munmap(b_pid, sizeof(std::atomic<pid_t>));
}

TEST(PeerHarness, MessagesShorterThanTheTagAreRejected) {
  BenchRecord r = RunPeerCase(TinyConfig(), PipeCase(Pattern::kRtt, 4));
  EXPECT_NE(r.error.find("below 8 bytes"), std::string::npos);
}

}  // namespace
}  // namespace shmlink::bench
