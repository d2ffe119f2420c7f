// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Python multiprocessing.connection framing (Connection.send_bytes / recv_bytes):
//
//   payload n < 2^31:   [int32 big-endian n][payload]
//   payload n >= 2^31:  [int32 big-endian -1][uint64 big-endian n][payload]
//
// A header with any other negative length is malformed. The same framing carries the
// authentication handshake (frames capped at kHandshakeMaxFrame = 256 B, as Python's
// recv_bytes(256)) and, on the socket data path, every message.
#ifndef SHMLINK_TRANSPORT_FRAME_H_
#define SHMLINK_TRANSPORT_FRAME_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <shmlink/expected.h>
#include <shmlink/transport_error.h>

namespace shmlink::transport {

inline constexpr size_t kHandshakeMaxFrame = 256;
inline constexpr size_t kMaxFrameHeader = 12;
inline constexpr uint64_t kLongFrameThreshold = 0x80000000ull;  // 2 GiB: use the -1 form

// Writes the header for a payload of `n` bytes into `out`; returns its length (4 or 12).
// any-thread.
size_t EncodeFrameHeader(uint64_t n, std::byte (&out)[kMaxFrameHeader]) noexcept;

// Incremental parser: feed it socket bytes in any chunking, take complete frames out.
// Errors are sticky: after kMalformedFrame or kFrameTooLarge every call returns the same
// error (the stream cannot be resynchronised; close the connection). not-thread-safe.
class FrameParser {
 public:
  // Frames longer than `max_payload` are rejected with kFrameTooLarge (detected from the
  // header alone, before any payload is buffered).
  explicit FrameParser(uint64_t max_payload) : max_payload_(max_payload) {}

  void set_max_payload(uint64_t max_payload) noexcept { max_payload_ = max_payload; }
  uint64_t max_payload() const noexcept { return max_payload_; }

  // Appends received bytes.
  void Feed(std::span<const std::byte> data);

  // Space to receive into directly (at least `min` bytes); then call Commit(n) with the
  // number of bytes actually written. Saves a copy on the socket path.
  std::span<std::byte> PrepareWrite(size_t min);
  void CommitWrite(size_t n) noexcept { end_ += n; }

  // The next complete frame's payload, valid until the next call of any non-const method.
  // kWouldBlock if no complete frame is buffered yet; kMalformedFrame, kFrameTooLarge.
  [[nodiscard]] Expected<std::span<const std::byte>> Peek();
  // Drops the frame returned by Peek().
  void Pop() noexcept;
  // Peek + copy + Pop.
  [[nodiscard]] Expected<std::vector<std::byte>> Next();

  // Takes one raw byte off the front of the stream, outside any frame, if it equals
  // `value` (Python's send_handle writes one such byte next to the fd it passes). False,
  // consuming nothing, if no byte is buffered, a frame is peeked or the byte differs.
  bool PopRawByteIf(std::byte value) noexcept;

  // Bytes buffered and not yet consumed (complete or partial frames).
  size_t buffered() const noexcept { return end_ - begin_; }
  // True if at least one complete frame is buffered (or an error is pending).
  bool HasFrame();

 private:
  void Compact();

  std::vector<std::byte> buf_;
  size_t begin_ = 0;   // first unconsumed byte
  size_t end_ = 0;     // end of valid bytes
  size_t peeked_ = 0;  // total length (header + payload) of the peeked frame, 0 if none
  uint64_t max_payload_;
  std::error_code error_;
};

}  // namespace shmlink::transport

#endif  // SHMLINK_TRANSPORT_FRAME_H_
