// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Sends garbage to a bridge's port: raw bytes that are not ZeroMQ at all, then ZeroMQ
// messages that are not bridge messages. Usage: bridge_garbage HOST PORT
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: bridge_garbage HOST PORT\n");
    return 2;
  }
  const int port = std::atoi(argv[2]);
  std::mt19937 rng(42);
  // 1. Raw bytes on the TCP port.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, argv[1], &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::perror("connect");
    return 1;
  }
  char junk[4096];
  for (char& c : junk) c = static_cast<char>(rng());
  std::memcpy(junk, "GET / HTTP/1.0\r\n\r\n", 18);
  (void)!::write(fd, junk, sizeof junk);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ::close(fd);
  // 2. Well-formed ZeroMQ, garbage inside: random frames, a wrong magic, a truncated body.
  void* ctx = zmq_ctx_new();
  void* s = zmq_socket(ctx, ZMQ_DEALER);
  const std::string ep = std::string("tcp://") + argv[1] + ":" + argv[2];
  zmq_connect(s, ep.c_str());
  for (int i = 0; i < 20; ++i) {
    const size_t n = rng() % 200;
    for (size_t j = 0; j < n; ++j) junk[j] = static_cast<char>(rng());
    if (i == 5) std::memcpy(junk, "SLB1\x04\x00\x05\x00", 8);  // data header, no records
    zmq_send(s, junk, i == 5 ? 24 : n, 0);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  int linger = 1000;
  zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
  zmq_close(s);
  zmq_ctx_term(ctx);
  return 0;
}
