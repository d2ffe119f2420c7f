// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Whole-buffer read()/write() loops on a blocking descriptor, retrying on EINTR and short
// transfers: what the stream-socket and pipe cases do per message. On failure errno is
// left as the failing call set it.
#ifndef SHMLINK_BENCH_FD_IO_H_
#define SHMLINK_BENCH_FD_IO_H_

#include <sys/types.h>

#include <cstddef>

namespace shmlink::bench {

// Writes all n bytes at p. Returns false on a write() error.
bool WriteAll(int fd, const std::byte* p, size_t n);

// Reads n bytes into p. Returns the bytes read: n, or less at end of stream; -1 on a
// read() error.
ssize_t ReadAll(int fd, std::byte* p, size_t n);

}  // namespace shmlink::bench

#endif  // SHMLINK_BENCH_FD_IO_H_
