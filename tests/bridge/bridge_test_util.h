// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Helpers of the bridge tests: two "hosts" (network namespaces joined by a veth pair, or
// loopback ports where namespaces are not permitted), bridge processes with their stderr
// captured, and checksummed test messages.
#ifndef SHMLINK_TESTS_BRIDGE_BRIDGE_TEST_UTIL_H_
#define SHMLINK_TESTS_BRIDGE_BRIDGE_TEST_UTIL_H_

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"

extern char** environ;

namespace shmlink::testing {

// ---------------------------------------------------------------- messages

// A test message of `size` >= 16 bytes: u64 sequence, u64 checksum, then filler derived
// from the sequence. The checksum covers the sequence and the filler.
inline uint64_t Fnv(uint64_t h, const unsigned char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}
inline size_t MessageSize(uint64_t seq, size_t min, size_t max) {
  return min + (seq * 2654435761u) % (max - min + 1);
}
inline void FillMessage(uint64_t seq, std::byte* out, size_t size) {
  auto* p = reinterpret_cast<unsigned char*>(out);
  std::memcpy(p, &seq, 8);
  for (size_t i = 16; i < size; ++i) p[i] = static_cast<unsigned char>(seq * 31 + i);
  uint64_t h = Fnv(1469598103934665603ull, p, 8);
  h = Fnv(h, p + 16, size - 16);
  std::memcpy(p + 8, &h, 8);
}
// The message's sequence, or -1 if it is too short or its checksum is wrong.
inline int64_t CheckMessage(const std::byte* in, size_t size) {
  if (size < 16) return -1;
  auto* p = reinterpret_cast<const unsigned char*>(in);
  uint64_t seq, sum;
  std::memcpy(&seq, p, 8);
  std::memcpy(&sum, p + 8, 8);
  uint64_t h = Fnv(1469598103934665603ull, p, 8);
  h = Fnv(h, p + 16, size - 16);
  return h == sum ? static_cast<int64_t>(seq) : -1;
}

// ---------------------------------------------------------------- processes

// Starts argv[0] with stdout/stderr appended to `log` (stdin /dev/null). Returns the pid.
inline pid_t SpawnLogged(const std::vector<std::string>& args, const std::string& log,
                         const std::vector<std::string>& env_extra = {}) {
  std::vector<std::string> a = args;
  std::vector<char*> argv;
  for (auto& s : a) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::vector<std::string> envs;
  for (char** e = environ; *e != nullptr; ++e) envs.emplace_back(*e);
  for (auto& e : env_extra) envs.push_back(e);
  std::vector<char*> envp;
  for (auto& s : envs) envp.push_back(s.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

inline int RunQuiet(const std::string& cmd) {
  return std::system((cmd + " >/dev/null 2>&1").c_str());
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Polls `cond` every 5 ms until it holds or `limit` passes.
template <typename F>
bool WaitUntil(F cond, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// A free TCP port on loopback (closed again; a race with other tests is unlikely).
inline int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// ---------------------------------------------------------------- two hosts

// Host A (exporting) and host B (importing). With network namespaces, A is 10.77.0.1 and
// B 10.77.0.2 on a veth pair, both created here and deleted by the destructor; every
// address exists only inside those namespaces. Otherwise both are loopback.
class TwoHosts {
 public:
  TwoHosts() {
    const std::string sfx = std::to_string(::getpid()) + "-" + std::to_string(Counter()++);
    ns_a_ = "shmlA-" + sfx;
    ns_b_ = "shmlB-" + sfx;
    va_ = "vA" + std::to_string(::getpid() % 100000) + std::to_string(Counter());
    vb_ = "vB" + std::to_string(::getpid() % 100000) + std::to_string(Counter());
    if (std::getenv("SHMLINK_BRIDGE_TEST_LOOPBACK") == nullptr &&
        RunQuiet("ip netns add " + ns_a_) == 0) {
      netns_ = RunQuiet("ip netns add " + ns_b_) == 0 &&
               RunQuiet("ip link add " + va_ + " netns " + ns_a_ + " type veth peer name " + vb_ +
                        " netns " + ns_b_) == 0 &&
               RunQuiet("ip -n " + ns_a_ + " addr add 10.77.0.1/24 dev " + va_) == 0 &&
               RunQuiet("ip -n " + ns_b_ + " addr add 10.77.0.2/24 dev " + vb_) == 0 &&
               RunQuiet("ip -n " + ns_a_ + " link set " + va_ + " up") == 0 &&
               RunQuiet("ip -n " + ns_b_ + " link set " + vb_ + " up") == 0 &&
               RunQuiet("ip -n " + ns_a_ + " link set lo up") == 0 &&
               RunQuiet("ip -n " + ns_b_ + " link set lo up") == 0;
      if (!netns_) Cleanup();
    }
    if (!netns_) {
      std::fprintf(stderr,
                   "bridge test: network namespaces not permitted here (ip netns add failed); "
                   "using loopback ports instead\n");
    }
    port_ = netns_ ? 7001 : FreePort();
  }
  ~TwoHosts() { Cleanup(); }
  TwoHosts(const TwoHosts&) = delete;
  TwoHosts& operator=(const TwoHosts&) = delete;

  bool netns() const { return netns_; }
  std::string bind_endpoint() const {
    return (netns_ ? "tcp://10.77.0.1:" : "tcp://127.0.0.1:") + std::to_string(port_);
  }
  std::string connect_endpoint() const { return bind_endpoint(); }
  int port() const { return port_; }
  // Takes host A's link down (namespaces only): the hosts cannot reach each other until
  // Restore().
  bool Cut() const {
    return netns_ && RunQuiet("ip -n " + ns_a_ + " link set " + va_ + " down") == 0;
  }
  bool Restore() const {
    return netns_ && RunQuiet("ip -n " + ns_a_ + " link set " + va_ + " up") == 0;
  }
  // argv prefix that runs a command on host A / B.
  std::vector<std::string> On(char host, std::vector<std::string> argv) const {
    if (netns_) argv.insert(argv.begin(), {"ip", "netns", "exec", host == 'A' ? ns_a_ : ns_b_});
    return argv;
  }

 private:
  static int& Counter() {
    static int c = 0;
    return c;
  }
  void Cleanup() {
    RunQuiet("ip netns del " + ns_a_);
    RunQuiet("ip netns del " + ns_b_);
  }
  std::string ns_a_, ns_b_, va_, vb_;
  bool netns_ = false;
  int port_ = 0;
};

}  // namespace shmlink::testing

#endif  // SHMLINK_TESTS_BRIDGE_BRIDGE_TEST_UTIL_H_
