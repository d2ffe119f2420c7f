// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include "bench/fd_io.h"

#include <unistd.h>

#include <cerrno>

namespace shmlink::bench {

bool WriteAll(int fd, const std::byte* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

ssize_t ReadAll(int fd, std::byte* p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, p + got, n - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return static_cast<ssize_t>(got);
}

}  // namespace shmlink::bench
