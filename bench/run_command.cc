// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "bench/run_command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace shmlink::bench {

std::string RunCommand(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                       const std::string& cwd, double timeout_s,
                       const std::function<void(const std::string&)>& on_line) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) return std::string("fork: ") + std::strerror(errno);
  if (pid == 0) {
    dup2(out[1], 1);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
    for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int>(timeout_s * 1e3));
  std::string buf;
  bool timed_out = false;
  for (;;) {
    pollfd p{out[0], POLLIN, 0};
    int n = poll(&p, 1, 200);
    if (n > 0) {
      char b[8192];
      ssize_t got = read(out[0], b, sizeof b);
      if (got <= 0) break;
      buf.append(b, static_cast<size_t>(got));
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        on_line(buf.substr(0, nl));
        buf.erase(0, nl + 1);
      }
    }
    if (std::chrono::steady_clock::now() > deadline) {
      timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
  }
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (timed_out) return "timed out after " + std::to_string(static_cast<int>(timeout_s)) + " s";
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return "exited with status " + std::to_string(status);
  }
  return "";
}

}  // namespace shmlink::bench
