// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Boost.Interprocess message_queue peer (Boost 1.74, header-only): one queue per direction
// in POSIX shared memory, created by the parent before the case and opened by name in each
// child. Each queue holds max(8, min(1024, 8 MiB / size)) messages of exactly `size` bytes.
// Per message: send() copies the message into the queue under its process-shared mutex
// and signals a condition variable; receive() waits on the condition variable and copies
// the message out. That is the only API message_queue offers (no zero-copy form).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include "bench/cases.h"
#include "bench/peer_harness.h"

namespace shmlink::bench {
namespace {

namespace bip = boost::interprocess;

class BoostEndpoint final : public Endpoint {
 public:
  BoostEndpoint(const std::string& rx, const std::string& tx) {
    if (!rx.empty()) rx_ = std::make_unique<bip::message_queue>(bip::open_only, rx.c_str());
    if (!tx.empty()) tx_ = std::make_unique<bip::message_queue>(bip::open_only, tx.c_str());
  }
  bool Send(const std::byte* p, size_t n, std::string* err) override {
    try {
      tx_->send(p, n, 0);
      return true;
    } catch (const std::exception& e) {
      *err = std::string("message_queue::send: ") + e.what();
      return false;
    }
  }
  bool Recv(size_t n, uint64_t* tag, std::string* err) override {
    if (buf_.size() < n) buf_.resize(n);
    try {
      bip::message_queue::size_type got = 0;
      unsigned prio = 0;
      rx_->receive(buf_.data(), buf_.size(), got, prio);
      if (got != n) {
        *err = "message_queue::receive: got " + std::to_string(got) + " bytes, expected " +
               std::to_string(n);
        return false;
      }
    } catch (const std::exception& e) {
      *err = std::string("message_queue::receive: ") + e.what();
      return false;
    }
    std::memcpy(tag, buf_.data(), sizeof *tag);
    return true;
  }

 private:
  std::unique_ptr<bip::message_queue> rx_, tx_;
  std::vector<std::byte> buf_;
};

}  // namespace

// Removes queues left in /dev/shm by an earlier compare that was killed mid-case (their
// names carry the creating process's pid; only queues of processes that are gone go).
static void RemoveStaleQueues() {
  const std::string prefix = "shmlink-compare-boost-";
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const std::string name = e.path().filename().string();
    if (!name.starts_with(prefix)) continue;
    const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
    if (pid > 0 && kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      bip::message_queue::remove(name.c_str());
    }
  }
}

void RunBoostCases(const BenchConfig& cfg, const Emit& emit) {
  RemoveStaleQueues();
  static int serial = 0;
  RunPeerFamily(
      cfg, "boost-message-queue",
      "boost::interprocess::message_queue, one queue per direction, copy in/copy out",
      [](PeerCase* c) -> std::string {
        const std::string base =
            "shmlink-compare-boost-" + std::to_string(getpid()) + "-" + std::to_string(serial++);
        const std::string ab = base + "-ab", ba = base + "-ba";
        const size_t depth = std::clamp<size_t>((size_t{8} << 20) / c->size, 8, 1024);
        try {
          bip::message_queue::remove(ab.c_str());
          bip::message_queue::remove(ba.c_str());
          // Created here, opened by the children; the parent's handles close at once (the
          // shared memory stays until remove()).
          bip::message_queue(bip::create_only, ba.c_str(), depth, c->size);
          if (c->pattern == Pattern::kRtt) {
            bip::message_queue(bip::create_only, ab.c_str(), depth, c->size);
          }
        } catch (const std::exception& e) {
          bip::message_queue::remove(ba.c_str());
          return std::string("message_queue create: ") + e.what();
        }
        const bool rtt = c->pattern == Pattern::kRtt;
        c->make = [=](Side side, Pattern, size_t, std::string* err) -> std::unique_ptr<Endpoint> {
          try {
            if (side == Side::kA) return std::make_unique<BoostEndpoint>(ba, rtt ? ab : "");
            return std::make_unique<BoostEndpoint>(rtt ? ab : "", ba);
          } catch (const std::exception& e) {
            *err = std::string("message_queue open: ") + e.what();
            return nullptr;
          }
        };
        c->cleanup = [=] {
          bip::message_queue::remove(ab.c_str());
          bip::message_queue::remove(ba.c_str());
        };
        return "";
      },
      emit);
}

}  // namespace shmlink::bench
