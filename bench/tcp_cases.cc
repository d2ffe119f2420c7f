// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// TCP loopback peer: one connection over 127.0.0.1 (A accepts, B connects), TCP_NODELAY on
// both ends (otherwise Nagle's algorithm would hold back small RTT pings), default socket
// buffers. Per message: send() of the whole message, recv() loop into the receiver's
// buffer (two kernel copies plus the loopback TCP stack).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bench/cases.h"
#include "bench/peer_harness.h"

namespace shmlink::bench {
namespace {

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

void NoDelay(int fd) {
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

void RunTcpCases(const BenchConfig& cfg, const Emit& emit) {
  RunPeerFamily(
      cfg, "tcp-loopback", "TCP over 127.0.0.1, TCP_NODELAY, blocking send/recv",
      [](PeerCase* c) -> std::string {
        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0) return Errno("socket");
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;  // the kernel picks a free port
        socklen_t len = sizeof addr;
        if (bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            listen(lfd, 1) != 0 ||
            getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
          std::string e = Errno("bind/listen");
          close(lfd);
          return e;
        }
        c->make = [=](Side side, Pattern, size_t, std::string* err) -> std::unique_ptr<Endpoint> {
          int fd = -1;
          if (side == Side::kA) {
            fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) *err = Errno("accept");
          } else {
            fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd >= 0 &&
                connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
              *err = Errno("connect");
              close(fd);
              fd = -1;
            }
          }
          close(lfd);
          if (fd < 0) return nullptr;
          NoDelay(fd);
          return MakeFdEndpoint(fd, fd);
        };
        c->after_fork = [=] { close(lfd); };
        return "";
      },
      emit);
}

}  // namespace shmlink::bench
