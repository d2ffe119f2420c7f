// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Deterministic kill points for crash tests, with no hook in the library: the test runs the
// victim as a child it traces (ptrace) and SIGKILLs it the moment a chosen word of shared
// memory changes - e.g. right after an SPSC producer publishes a record header but before it
// stores write_pos, or right after an MPMC producer's claim CAS. The watch is an x86 debug
// register (a hardware write watchpoint), so the victim runs at full speed until the write
// and executes not one instruction after it.
//
//   auto out = RunTraced([&] {
//     auto tx = ring.Producer();
//     KillOnWrite(&header_word);          // the next write to it kills us
//     tx->try_send(payload);              // never returns: killed inside commit
//     return 0;
//   }, std::chrono::seconds(10));
//   EXPECT_EQ(out.kind, TracedOutcome::kKilledAtPoint);
//
// Limits: the watch applies to the thread that called KillOnWrite (debug registers are per
// thread); one watch at a time (a new call replaces it); x86-64 only (elsewhere KillOnWrite
// returns false and tests should skip). The child runs the body and _exits with its result;
// it never returns into the test framework.
#ifndef SHMLINK_TESTS_KILL_ON_WRITE_H_
#define SHMLINK_TESTS_KILL_ON_WRITE_H_

#include <chrono>
#include <cstdint>
#include <functional>

namespace shmlink::testing {

// In a child run by RunTraced: after this returns true, the tracer SIGKILLs the calling
// process right after the `nth` write (counted from now) to the aligned 8-byte word at `addr`
// after which (word & mask) == value; mask 0 matches every write. `addr` == nullptr
// disarms. Returns false (and arms nothing) outside RunTraced or if the tracer could not
// set the watchpoint.
bool KillOnWrite(const void* addr, uint64_t mask = 0, uint64_t value = 0, int nth = 1);

struct TracedOutcome {
  enum Kind {
    kKilledAtPoint,  // killed by the tracer at the armed write
    kExited,         // the body returned (code = its result) or called exit
    kSignaled,       // died of a signal the tracer did not send (code = the signal)
    kTimedOut,       // still running at the limit: SIGKILLed by the tracer
    kTraceFailed,    // fork or ptrace failed (code = errno)
  };
  Kind kind = kTraceFailed;
  int code = 0;
  uint64_t word = 0;  // kKilledAtPoint: the watched word's value at the kill
};
const char* TracedOutcomeName(TracedOutcome::Kind kind);

// Forks `body` as a child traced by the caller and runs it until it exits, is killed at its
// armed point, or `limit` passes. Always reaps the child. Mappings made before the call
// have the same addresses in the child. Not thread-safe with other waitpid(-1) users.
TracedOutcome RunTraced(const std::function<int()>& body, std::chrono::milliseconds limit);

}  // namespace shmlink::testing

#endif  // SHMLINK_TESTS_KILL_ON_WRITE_H_
