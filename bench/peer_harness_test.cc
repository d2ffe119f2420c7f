// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The peer harness over real processes and real pipes: a good channel yields a complete
// record; a channel that loses a message, a side that cannot build its endpoint, and a side
// that fails mid-run each yield an error record (and return promptly) instead of a figure.
#include "bench/peer_harness.h"

#include <unistd.h>

#include <chrono>
#include <cstring>

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

TEST(PeerHarness, MessagesShorterThanTheTagAreRejected) {
  BenchRecord r = RunPeerCase(TinyConfig(), PipeCase(Pattern::kRtt, 4));
  EXPECT_NE(r.error.find("below 8 bytes"), std::string::npos);
}

}  // namespace
}  // namespace shmlink::bench
