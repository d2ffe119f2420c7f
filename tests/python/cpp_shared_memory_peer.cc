// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// cpp_shared_memory_peer: the C++ side of tests/python/test_shared_memory_cpp.py, pairing
// shmlink::SharedMemory with Python's shmlink.shared_memory.SharedMemory.
//
//   cpp_shared_memory_peer --attach NAME       attaches, checks that the whole block holds
//                                              pattern 1, overwrites it with pattern 2,
//                                              prints "ok SIZE"
//   cpp_shared_memory_peer --create NAME SIZE  creates the block, fills it with pattern 3,
//                                              prints "ready", waits for a line (or EOF)
//                                              on stdin, unlinks it, prints "unlinked"
// Pattern s: byte i is ((i % 251) * 7 + s) & 0xff (the test computes the same).
// Exit status: 0 success, 1 SharedMemory error (printed), 2 usage, 3 pattern mismatch.
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>

#include <shmlink/shared_memory.h>

namespace {

std::byte Pattern(size_t i, unsigned seed) {
  return static_cast<std::byte>(((i % 251) * 7 + seed) & 0xff);
}

int Fail(const char* what, std::error_code ec) {
  std::fprintf(stderr, "%s: %s\n", what, ec.message().c_str());
  return 1;
}

int Usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s --attach NAME | --create NAME SIZE\n", argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return Usage(argv[0]);
  const std::string mode = argv[1];
  const std::string name = argv[2];
  if (mode == "--attach" && argc == 3) {
    auto shm = shmlink::SharedMemory::Attach(name);
    if (!shm) return Fail("attach", shm.error());
    std::span<std::byte> b = shm->bytes();
    for (size_t i = 0; i < b.size(); ++i) {
      if (b[i] != Pattern(i, 1)) {
        std::fprintf(stderr, "pattern mismatch at byte %zu of %zu\n", i, b.size());
        return 3;
      }
    }
    for (size_t i = 0; i < b.size(); ++i) b[i] = Pattern(i, 2);
    std::printf("ok %zu\n", shm->size());
    return 0;
  }
  if (mode == "--create" && argc == 4) {
    char* end = nullptr;
    const unsigned long long size = std::strtoull(argv[3], &end, 10);
    if (end == argv[3] || *end != '\0') return Usage(argv[0]);
    auto shm = shmlink::SharedMemory::Create(name, size);
    if (!shm) return Fail("create", shm.error());
    std::span<std::byte> b = shm->bytes();
    for (size_t i = 0; i < b.size(); ++i) b[i] = Pattern(i, 3);
    std::printf("ready\n");
    std::fflush(stdout);
    for (int c = std::getchar(); c != EOF && c != '\n'; c = std::getchar()) {
    }
    if (auto u = shm->Unlink(); !u) return Fail("unlink", u.error());
    std::printf("unlinked\n");
    return 0;
  }
  return Usage(argv[0]);
}
