// fuzz-srcs: ringbuf/ring_error.cc ringbuf/futex.cc ringbuf/process_identity.cc ringbuf/segment.cc
// fuzz-srcs: ringbuf/segment_header.cc ringbuf/holder_lock.cc ringbuf/topic.cc
// fuzz-srcs: ringbuf/topic_layout.cc ringbuf/topic_liveness.cc ringbuf/readiness_notifier.cc
// fuzz-srcs: ringbuf/topic_publisher.cc ringbuf/topic_subscriber.cc ringbuf/log.cc
// fuzz-libs: -lpthread
// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Fuzz target: a topic segment full of hostile bytes, in a REAL mapping (memfd).
//
// Input: byte 0 = mode flags, bytes 1-2 = geometry selector, rest = segment image + ops.
//  flags & 1: 0 raw header bytes (fixed up: magic, version, kind kTopic, ready, checksum,
//             total size) around fuzzed geometry; 1 plausible geometry (capacity 4-32 KiB,
//             1-8 subscribers, either policy, optionally typed), one geometry word then
//             flipped when flags & 2. The control block, slots and log are fuzzed bytes.
// Then: ValidateTopicSegment; on a valid geometry it claims the publisher and two
// subscribers and runs try_loan/publish and try_receive/release loops driven by the ops.
// Invariants: typed errors only; a validated geometry fits the mapping; every span handed
// out (loaned or received) lies inside the log; the header is ASan-poisoned while the
// handles run (nothing reads or writes it after validation) and unchanged afterwards.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "fuzz/shm_fuzz_util.h"

#include <shmlink/segment.h>
#include <shmlink/segment_header.h>
#include <shmlink/topic.h>
#include <shmlink/topic_layout.h>

namespace shmlink {
namespace {

using fuzz::Allowed;
using fuzz::CheckTypedError;
using fuzz::Fail;
using fuzz::Reader;

constexpr size_t kMaxSegment = 1 << 17;

void FixHeader(std::vector<uint8_t>& image) {
  auto* h = reinterpret_cast<SegmentHeader*>(image.data());
  h->magic = kSegmentMagic;
  h->version = kLayoutVersion;
  h->kind = static_cast<uint32_t>(SegmentKind::kTopic);
  h->header_size = sizeof(SegmentHeader);
  h->flags = 0;
  h->total_size = image.size();
  h->checksum = HeaderChecksum(image.data());
  h->ready.store(kReadyMark, std::memory_order_relaxed);
}

Segment MakeMapping(const std::vector<uint8_t>& image) {
  const int fd = ::memfd_create("shmlink-topic-fuzz", MFD_CLOEXEC);
  if (fd < 0) Fail("memfd_create");
  if (::ftruncate(fd, static_cast<off_t>(image.size())) != 0) Fail("ftruncate");
  if (::pwrite(fd, image.data(), image.size(), 0) != static_cast<ssize_t>(image.size())) {
    Fail("pwrite");
  }
  auto seg = Segment::FromFd(fd);
  if (!seg) {
    CheckTypedError(seg.error());
    return Segment();
  }
  return std::move(*seg);
}

void CheckInLog(const TopicRegion& r, const std::byte* p, size_t n) {
  if (n > r.geometry.max_message_size) Fail("span longer than max_message_size");
  if (n == 0) return;
  if (p < r.data || p + n > r.data + r.geometry.capacity) Fail("span outside the log");
}

void Exercise(const std::shared_ptr<const Segment>& seg, const TopicGeometry& g, Reader& in) {
  const TopicRegion r = TopicRegionOf(*seg, g);
  std::byte* base = seg->data();
  uint8_t header_before[sizeof(SegmentHeader)];
  std::memcpy(header_before, base, sizeof(header_before));
  const Allowed allowed[] = {{sizeof(SegmentHeader), static_cast<size_t>(g.total_size)}};
  fuzz::PoisonAllExcept(base, seg->size(), allowed, 1);
  {
    auto pub = TopicPublisher::Claim(seg, r);
    if (!pub) CheckTypedError(pub.error());
    auto s1 = TopicSubscriber::Join(seg, r);
    if (!s1) CheckTypedError(s1.error());
    auto s2 = TopicSubscriber::Join(seg, r);
    if (!s2) CheckTypedError(s2.error());
    volatile uint8_t sink = 0;
    for (int round = 0; round < 4 && !in.empty(); ++round) {
      if (pub) {
        for (int i = 0; i < 16; ++i) {
          const size_t n = in.u16() % (g.max_message_size + 32);
          auto buf = pub->try_loan(n);
          if (!buf) {
            CheckTypedError(buf.error());
            break;
          }
          if (buf->size() != n) Fail("loaned span of the wrong size");
          CheckInLog(r, buf->data(), buf->size());
          if (n) std::memset(buf->data(), 0x5A, n);
          if (in.u8() & 1) {
            if (auto p = pub->publish(); !p) CheckTypedError(p.error());
          } else {
            pub->cancel();
          }
        }
        if (in.u8() == 0xC1) pub->close();
      }
      for (auto* sub : {&s1, &s2}) {
        if (!*sub) continue;
        for (int i = 0; i < 32; ++i) {
          auto m = (*sub)->try_receive();
          if (!m) {
            CheckTypedError(m.error());
            if (m.error() != RingErrc::kOverrun) break;
            continue;
          }
          CheckInLog(r, m->data.data(), m->data.size());
          for (std::byte b : m->data) sink = sink ^ static_cast<uint8_t>(b);
          if (auto rel = (*sub)->release(); !rel) CheckTypedError(rel.error());
        }
      }
    }
    (void)sink;
  }
  fuzz::UnpoisonAll(base, seg->size());
  if (std::memcmp(header_before, base, sizeof(header_before)) != 0) {
    Fail("topic operations modified the segment header");
  }
}

}  // namespace
}  // namespace shmlink

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shmlink;
  Reader in(data, size);
  const uint8_t flags = in.u8();
  const uint16_t sel = in.u16();

  TopicGeometry g;
  size_t seg_size = 0;
  if (flags & 1) {
    g.capacity = uint64_t{4096} << (sel & 3);
    g.max_message_size = TopicMaxMessageSizeLimit(g.capacity) >> ((sel >> 2) & 3);
    g.max_subscribers = 1 + ((sel >> 4) & 7);
    g.policy = (sel & 0x80) ? TopicPolicy::kOverwrite : TopicPolicy::kBlock;
    g.history = (sel >> 8) & 7;
    if (sel & 0x800) {
      g.type_size = 48;
      g.type_align = 8;
      g.type_hash = 0x1234;
    }
    auto s = TopicSegmentSize(g);
    if (!s) return 0;
    seg_size = *s;
  } else {
    seg_size = sizeof(SegmentHeader) + (sel % kMaxSegment);
  }
  if (seg_size > kMaxSegment) seg_size = kMaxSegment;
  std::vector<uint8_t> image(seg_size, 0);
  const size_t image_bytes = std::min(seg_size, in.remaining());
  if (image_bytes) std::memcpy(image.data(), in.rest(), image_bytes);
  Reader ops(in.rest() + std::min<size_t>(in.remaining(), sizeof(SegmentHeader)),
             in.remaining() > sizeof(SegmentHeader) ? in.remaining() - sizeof(SegmentHeader) : 0);
  if (flags & 1) {
    auto* h = reinterpret_cast<SegmentHeader*>(image.data());
    const uint64_t geometry[8] = {
        g.capacity,
        g.max_message_size,
        uint64_t{g.max_subscribers} | (uint64_t{static_cast<uint32_t>(g.policy)} << 32),
        g.history,
        uint64_t{g.type_size} | (uint64_t{g.type_align} << 32),
        g.type_hash,
        kTopicSlotsOffset,
        seg_size - g.capacity};
    std::memcpy(h->geometry, geometry, sizeof(geometry));
    if (flags & 2) h->geometry[(flags >> 2) & 7] ^= uint64_t{1} << ((flags >> 5) * 8 + (sel >> 13));
  }
  FixHeader(image);

  Segment mapped = MakeMapping(image);
  if (!mapped.valid()) return 0;
  auto seg = std::make_shared<const Segment>(std::move(mapped));
  auto v = ValidateTopicSegment(*seg);
  if (!v) {
    CheckTypedError(v.error());
    return 0;
  }
  if (v->total_size != seg->size() || v->data_offset + v->capacity > seg->size() ||
      v->data_offset < v->slots_offset + uint64_t{v->max_subscribers} * sizeof(TopicSlot) ||
      (v->capacity & (v->capacity - 1)) != 0) {
    Fail("validated topic geometry does not fit the mapping");
  }
  Exercise(seg, *v, ops);
  return 0;
}
