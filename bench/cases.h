// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// The benchmark cases, one function per system family, each in its own bench/*_cases.cc.
// Both //bench:ring_throughput and //bench:compare call them; every function runs its
// throughput and RTT cases for cfg.sizes in separate, pinned processes and calls `emit`
// once per record (records carry schema names, see bench_record.h).
// A system that cannot run emits a record with `error` set instead of failing.
#ifndef SHMLINK_BENCH_CASES_H_
#define SHMLINK_BENCH_CASES_H_

#include <functional>

#include "bench/bench_record.h"

namespace shmlink::bench {

using Emit = std::function<void(const BenchRecord&)>;

void RunSpscCases(const BenchConfig& cfg, const Emit& emit);  // shmlink-spsc, shmlink-spsc-sleep
void RunSocketpairCases(const BenchConfig& cfg, const Emit& emit);  // unix-socketpair
void RunFloorCases(const BenchConfig& cfg, const Emit& emit);       // floor-cacheline, floor-memcpy
void RunFloorFlowCases(const BenchConfig& cfg, const Emit& emit);   // floor-transfer, floor-stream
void RunMpmcCases(const BenchConfig& cfg, const Emit& emit);        // shmlink-mpmc, mutex-queue
// RunMpmcCases at 2 producers -> 2 consumers only, unless SHMLINK_MPMC_PROCS says otherwise.
void RunMpmcPairCases(const BenchConfig& cfg, const Emit& emit);
void RunConnectionCases(const BenchConfig& cfg,
                        const Emit& emit);  // shmlink-connection, unix-socket-framed
void RunPipeCases(const BenchConfig& cfg, const Emit& emit);     // pipe
void RunTcpCases(const BenchConfig& cfg, const Emit& emit);      // tcp-loopback
void RunIceoryxCases(const BenchConfig& cfg, const Emit& emit);  // iceoryx
void RunBoostCases(const BenchConfig& cfg, const Emit& emit);    // boost-message-queue
void RunPubsubCases(const BenchConfig& cfg, const Emit& emit);   // shmlink-pubsub (N subscribers)
void RunIceoryxPubsubCases(const BenchConfig& cfg,
                           const Emit& emit);                   // iceoryx pub/sub, N subscribers
void RunPythonCases(const BenchConfig& cfg, const Emit& emit);  // python-mp-*, python-shmlink-*

}  // namespace shmlink::bench

#endif  // SHMLINK_BENCH_CASES_H_
