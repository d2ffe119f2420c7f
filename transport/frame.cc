// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <cstring>

#include <shmlink/frame.h>

namespace shmlink::transport {
namespace {

uint32_t LoadBe32(const std::byte* p) noexcept {
  return (uint32_t{std::to_integer<uint8_t>(p[0])} << 24) |
         (uint32_t{std::to_integer<uint8_t>(p[1])} << 16) |
         (uint32_t{std::to_integer<uint8_t>(p[2])} << 8) | uint32_t{std::to_integer<uint8_t>(p[3])};
}

uint64_t LoadBe64(const std::byte* p) noexcept {
  return (uint64_t{LoadBe32(p)} << 32) | LoadBe32(p + 4);
}

void StoreBe32(uint32_t v, std::byte* p) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>(v >> (24 - 8 * i));
}

}  // namespace

size_t EncodeFrameHeader(uint64_t n, std::byte (&out)[kMaxFrameHeader]) noexcept {
  if (n < kLongFrameThreshold) {
    StoreBe32(static_cast<uint32_t>(n), out);
    return 4;
  }
  StoreBe32(0xffffffffu, out);  // int32 -1
  StoreBe32(static_cast<uint32_t>(n >> 32), out + 4);
  StoreBe32(static_cast<uint32_t>(n), out + 8);
  return 12;
}

void FrameParser::Compact() {
  if (begin_ == 0) return;
  if (begin_ == end_) {
    begin_ = end_ = 0;
    return;
  }
  // Only move when the consumed prefix dominates, so compaction stays amortised O(1).
  if (begin_ >= buf_.size() / 2) {
    std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
}

void FrameParser::Feed(std::span<const std::byte> data) {
  if (data.empty()) return;
  auto dst = PrepareWrite(data.size());
  std::memcpy(dst.data(), data.data(), data.size());
  CommitWrite(data.size());
}

std::span<std::byte> FrameParser::PrepareWrite(size_t min) {
  if (peeked_ == 0) Compact();
  if (buf_.size() - end_ < min) buf_.resize(end_ + std::max(min, buf_.size()));
  return std::span<std::byte>(buf_.data() + end_, buf_.size() - end_);
}

Expected<std::span<const std::byte>> FrameParser::Peek() {
  if (error_) return MakeUnexpected(error_);
  const size_t avail = end_ - begin_;
  if (avail < 4) return TransportErrc::kWouldBlock;
  const std::byte* p = buf_.data() + begin_;
  const int32_t n32 = static_cast<int32_t>(LoadBe32(p));
  uint64_t n = 0;
  size_t header = 4;
  if (n32 >= 0) {
    n = static_cast<uint64_t>(n32);
  } else if (n32 == -1) {
    if (avail < 12) {
      return TransportErrc::kWouldBlock;
    }
    n = LoadBe64(p + 4);
    header = 12;
  } else {
    error_ = make_error_code(TransportErrc::kMalformedFrame);
    return MakeUnexpected(error_);
  }
  if (n > max_payload_) {
    error_ = make_error_code(TransportErrc::kFrameTooLarge);
    return MakeUnexpected(error_);
  }
  if (avail - header < n) return TransportErrc::kWouldBlock;
  peeked_ = header + n;
  return std::span<const std::byte>(p + header, n);
}

void FrameParser::Pop() noexcept {
  begin_ += peeked_;
  peeked_ = 0;
  if (begin_ == end_) begin_ = end_ = 0;
}

bool FrameParser::PopRawByteIf(std::byte value) noexcept {
  if (peeked_ != 0 || begin_ == end_ || error_ || buf_[begin_] != value) return false;
  ++begin_;
  if (begin_ == end_) begin_ = end_ = 0;
  return true;
}

Expected<std::vector<std::byte>> FrameParser::Next() {
  auto f = Peek();
  if (!f) return MakeUnexpected(f.error());
  std::vector<std::byte> out(f->begin(), f->end());
  Pop();
  return out;
}

bool FrameParser::HasFrame() {
  auto f = Peek();
  if (f) return true;
  return f.error() != make_error_code(TransportErrc::kWouldBlock);
}

}  // namespace shmlink::transport
