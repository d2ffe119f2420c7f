// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// RingErrc: the typed errors of the shared-memory data path (segments, headers, rings,
// queues). They live in shmlink's own std::error_category ("shmlink.ring"); failures of
// system calls are reported in std::system_category with the errno value instead.
//
// For each code the comment says whether retrying the same call can help.
#ifndef SHMLINK_RINGBUF_RING_ERROR_H_
#define SHMLINK_RINGBUF_RING_ERROR_H_

#include <system_error>

namespace shmlink {

enum class RingErrc : int {
  // 0 is reserved for "no error" by std::error_code.
  kInvalidName = 1,  // Shm name malformed (no leading '/', too long, bad char). No retry.
  kInvalidArgument,  // A size/capacity/option outside its documented range. No retry.
  kTruncated,        // Segment smaller than its header says (or than a header). No retry.
  kBadMagic,         // Not a shmlink segment. No retry.
  kBadVersion,       // shmlink segment of another layout version. No retry.
  kWrongKind,        // shmlink segment of another kind (e.g. SPSC opened as MPMC), or the
                     // name is no segment at all (a FIFO or directory). No retry.
  kBadChecksum,      // Header bytes corrupted. No retry.
  kBadGeometry,      // Header fields inconsistent (offsets, capacity, sizes). No retry.
  kNotReady,         // Creator has not finished initialising. Retry helps.
  kWouldBlock,       // try_ call: ring full (writer) or empty (reader). Retry helps.
  kTimedOut,         // Blocking call reached its timeout. Retry helps.
  kClosed,           // Writer marked end-of-stream and everything was drained. No retry.
  kTooLarge,         // Message larger than the ring's max_message_size(). No retry.
  kCorrupt,          // Ring indices/records inconsistent: the peer or memory is broken.
                     // The ring must be abandoned. No retry.
  kRoleTaken,        // The producer/consumer role is held by another live process.
                     // Retry after it detaches.
  kBadState,         // Call not valid now (e.g. release() with nothing peeked). No retry.
  kPeerDead,         // The process on the other side died. No retry.
  kOverrun,          // Topic subscriber lapped by the publisher (overwrite policy): messages
                     // were lost (the subscriber tells how many) and it continues from the
                     // oldest intact one. Retry helps (the next receive succeeds).
  kTypeMismatch,     // Typed topic call with another type (size, alignment or name hash)
                     // than the topic was created with. No retry.
  kRevoked,          // This handle's registration was taken away: its process was judged
                     // dead (its liveness token fd was closed behind its back) and its claims
                     // were recovered. The handle can do nothing more; make a new one.
                     // No retry with this handle.
};

const std::error_category& RingCategory() noexcept;

inline std::error_code make_error_code(RingErrc e) noexcept {
  return {static_cast<int>(e), RingCategory()};
}

}  // namespace shmlink

template <>
struct std::is_error_code_enum<shmlink::RingErrc> : std::true_type {};

#endif  // SHMLINK_RINGBUF_RING_ERROR_H_
