// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <string>

#include <shmlink/ring_error.h>

namespace shmlink {
namespace {

class RingCategoryImpl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "shmlink.ring"; }
  std::string message(int ev) const override {
    switch (static_cast<RingErrc>(ev)) {
      case RingErrc::kInvalidName:
        return "invalid shared-memory name (need '/', 2..255 chars of [A-Za-z0-9._-])";
      case RingErrc::kInvalidArgument:
        return "invalid argument";
      case RingErrc::kTruncated:
        return "segment is truncated";
      case RingErrc::kBadMagic:
        return "not a shmlink segment (bad magic)";
      case RingErrc::kBadVersion:
        return "unsupported shmlink layout version";
      case RingErrc::kWrongKind:
        return "segment is of another kind (or not a regular file)";
      case RingErrc::kBadChecksum:
        return "segment header checksum mismatch";
      case RingErrc::kBadGeometry:
        return "segment header geometry is inconsistent";
      case RingErrc::kNotReady:
        return "segment is not initialised yet";
      case RingErrc::kWouldBlock:
        return "operation would block";
      case RingErrc::kTimedOut:
        return "timed out";
      case RingErrc::kClosed:
        return "closed by the writer (end of stream)";
      case RingErrc::kTooLarge:
        return "message larger than the maximum size";
      case RingErrc::kCorrupt:
        return "ring state is corrupt";
      case RingErrc::kRoleTaken:
        return "role already held by a live process";
      case RingErrc::kBadState:
        return "call not valid in the current state";
      case RingErrc::kPeerDead:
        return "peer process died";
      case RingErrc::kOverrun:
        return "overrun: the publisher overwrote messages before they were read";
      case RingErrc::kTypeMismatch:
        return "message type does not match the topic's type";
      case RingErrc::kRevoked:
        return "handle revoked: its process was judged dead and its claims recovered";
    }
    return "unknown shmlink.ring error " + std::to_string(ev);
  }
};

}  // namespace

const std::error_category& RingCategory() noexcept {
  static const RingCategoryImpl kCategory;
  return kCategory;
}

}  // namespace shmlink
