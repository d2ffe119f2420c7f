// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// pipe(2) peer: throughput over one pipe (B writes, A reads); RTT over two pipes, one per
// direction. Default pipe capacity (64 KiB on Linux), blocking descriptors. Per message the
// sender write()s the whole message (kernel copies it in) and the receiver read()s it
// into its own buffer (kernel copies it out); a 1 MiB message takes several write/read
// calls, each waking the other side.
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bench/cases.h"
#include "bench/peer_harness.h"

namespace shmlink::bench {

void RunPipeCases(const BenchConfig& cfg, const Emit& emit) {
  RunPeerFamily(
      cfg, "pipe", "pipe(2), default 64 KiB capacity, blocking write/read of whole messages",
      [](PeerCase* c) -> std::string {
        // ab: A -> B (RTT pings), ba: B -> A (throughput data, RTT echoes)
        int ab[2] = {-1, -1}, ba[2] = {-1, -1};
        if (pipe(ba) != 0) return std::string("pipe: ") + std::strerror(errno);
        if (c->pattern == Pattern::kRtt && pipe(ab) != 0) {
          close(ba[0]);
          close(ba[1]);
          return std::string("pipe: ") + std::strerror(errno);
        }
        auto close_if = [](int fd) {
          if (fd >= 0) close(fd);
        };
        c->make = [=](Side side, Pattern, size_t, std::string*) {
          if (side == Side::kA) {  // reads ba, writes ab
            close_if(ba[1]);
            close_if(ab[0]);
            return MakeFdEndpoint(ba[0], ab[1]);
          }
          close_if(ba[0]);
          close_if(ab[1]);
          return MakeFdEndpoint(ab[0], ba[1]);
        };
        c->after_fork = [=] {
          for (int fd : {ab[0], ab[1], ba[0], ba[1]}) close_if(fd);
        };
        return "";
      },
      emit);
}

}  // namespace shmlink::bench
