// fuzz-srcs: ringbuf/ring_error.cc ringbuf/futex.cc ringbuf/process_identity.cc ringbuf/segment.cc
// fuzz-srcs: ringbuf/segment_header.cc ringbuf/spsc_layout.cc ringbuf/spsc_ring.cc
// fuzz-srcs: ringbuf/mpmc_layout.cc ringbuf/mpmc_queue.cc ringbuf/shared_object.cc
// fuzz-srcs: ringbuf/mpmc_handle.cc ringbuf/log.cc ringbuf/readiness_notifier.cc
// fuzz-srcs: ringbuf/holder_lock.cc
// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Fuzz target: attaching to a segment full of hostile bytes, in a REAL mapping.
//
// Each input becomes a real shared-memory file (a memfd, or a named POSIX shm segment
// opened through Segment::Open / SpscRing::Attach) of a fuzzed size holding the fuzzed
// bytes. The target then runs every validator that exists (ValidateHeader for each kind,
// ValidateSpscSegment for one and two rings) and, when a segment validates, claims the
// consumer and producer roles of each ring and runs try_peek/advance/release and
// try_reserve/commit loops on it. Everything outside the ring being exercised (segment
// header, the other ring, slack after the data) is ASan-poisoned, so any access the ring
// code makes outside its own control block and data region is reported.
//
// Input: byte 0 = mode flags, bytes 1-2 = size selector, rest = segment image + op bytes.
//  flags & 3: 0 raw bytes; 1 header fixed up (magic, version, ready, checksum, total size)
//             around fuzzed kind/geometry; 2 plausible one-ring SPSC geometry; 3 plausible
//             two-ring (connection) geometry. Modes 2-3 reach the ring code on most inputs.
//  flags & 4: named shm segment (shm_open + Segment::Open, SpscRing/MpmcQueue/SharedObject
//             ::Attach) instead of a memfd.
// Invariants checked: every failure is a typed error (RingErrc or errno), a validated
// geometry fits the mapping, every span handed out lies inside its ring's data region,
// nothing outside the ring is touched, and nothing crashes.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/shm_fuzz_util.h"

#include <shmlink/mpmc_layout.h>
#include <shmlink/mpmc_queue.h>
#include <shmlink/segment.h>
#include <shmlink/segment_header.h>
#include <shmlink/shared_object.h>
#include <shmlink/spsc_layout.h>
#include <shmlink/spsc_ring.h>

namespace shmlink {
namespace {

using fuzz::Allowed;
using fuzz::CheckTypedError;
using fuzz::Fail;
using fuzz::Reader;

constexpr size_t kMaxSegment = 1 << 17;

void FixHeader(std::vector<uint8_t>& image, uint32_t kind, bool keep_fuzzed_kind) {
  if (image.size() < sizeof(SegmentHeader)) return;
  auto* h = reinterpret_cast<SegmentHeader*>(image.data());
  h->magic = kSegmentMagic;
  h->version = kLayoutVersion;
  if (!keep_fuzzed_kind) h->kind = kind;
  h->header_size = sizeof(SegmentHeader);
  h->flags = 0;
  h->total_size = image.size();
  h->checksum = HeaderChecksum(image.data());
  h->ready.store(kReadyMark, std::memory_order_relaxed);
}

// Writes the image into a fresh memfd or named segment and attaches to it the way a peer
// would. Returns an invalid Segment if attaching failed (after checking the error).
Segment MakeMapping(const std::vector<uint8_t>& image, bool named) {
  int fd = -1;
  std::string name;
  if (named) {
    name = "/shmlink-fuzz-hdr-" + std::to_string(::getpid());
    ::shm_unlink(name.c_str());  // a previous input that crashed may have left it
    fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  } else {
    fd = ::memfd_create("shmlink-fuzz", MFD_CLOEXEC);
  }
  if (fd < 0) Fail("cannot create the backing file");
  if (::ftruncate(fd, static_cast<off_t>(image.size())) != 0) Fail("ftruncate");
  if (!image.empty() &&
      ::pwrite(fd, image.data(), image.size(), 0) != static_cast<ssize_t>(image.size())) {
    Fail("pwrite");
  }
  Expected<Segment> seg = RingErrc::kInvalidArgument;
  if (named) {
    ::close(fd);
    // The attach path a real consumer takes.
    auto ring = SpscRing::Attach(name);
    if (!ring) CheckTypedError(ring.error());
    // The other kinds' attach paths. A queue that validates is driven a little (bounded:
    // try_ forms only); a shared object is only attached (its lock is a pthread mutex the
    // trust boundary leaves to the peer: see docs/RELIABILITY.md).
    if (auto q = MpmcQueue::Attach(name); !q) {
      CheckTypedError(q.error());
    } else {
      auto tx = q->Producer();
      auto rx = q->Consumer();
      if (!tx) CheckTypedError(tx.error());
      if (!rx) CheckTypedError(rx.error());
      std::byte buf[64] = {};
      for (int i = 0; i < 4; ++i) {
        if (tx) {
          if (auto r = tx->try_push(std::span<const std::byte>(buf, 8 * i)); !r) {
            CheckTypedError(r.error());
          }
        }
        if (rx) {
          if (auto r = rx->try_pop(buf); !r) CheckTypedError(r.error());
        }
      }
    }
    if (auto o = SharedObject::Attach(name); !o) CheckTypedError(o.error());
    seg = Segment::Open(name);
    ::shm_unlink(name.c_str());
  } else {
    seg = Segment::FromFd(fd);
  }
  if (!seg) {
    CheckTypedError(seg.error());
    if (image.empty() && seg.error() != RingErrc::kTruncated) Fail("empty file not kTruncated");
    return Segment();
  }
  if (seg->size() != image.size()) Fail("mapped size differs from the file size");
  return std::move(*seg);
}

void CheckSpan(const SpscRegion& r, const std::byte* p, size_t n) {
  if (n > SpscMaxMessageSize(r.capacity)) Fail("span longer than max_message_size");
  if (n == 0) return;
  if (p < r.data || p + n > r.data + r.capacity) Fail("span outside the ring's data region");
}

// Drives one ring of a validated segment with ops taken from `in`.
void ExerciseRing(const std::shared_ptr<const Segment>& seg, const SpscGeometry& g, uint32_t index,
                  Reader& in) {
  SpscRegion r = SpscRegionAt(*seg, g, index);
  const size_t ctl_begin = static_cast<size_t>(g.control_offset + index * sizeof(SpscControl));
  const size_t data_begin = static_cast<size_t>(g.data_offset + index * g.capacity);
  const Allowed allowed[] = {{ctl_begin, ctl_begin + sizeof(SpscControl)},
                             {data_begin, data_begin + static_cast<size_t>(g.capacity)}};
  std::byte* base = seg->data();
  // The header must come out of the ring operations unchanged.
  uint8_t header_before[sizeof(SegmentHeader)];
  std::memcpy(header_before, base, sizeof(header_before));
  fuzz::PoisonAllExcept(base, seg->size(), allowed, 2);
  {
    auto rx = SpscConsumer::Claim(seg, r);
    auto tx = SpscProducer::Claim(seg, r);
    if (!rx) CheckTypedError(rx.error());
    if (!tx) CheckTypedError(tx.error());
    volatile uint8_t sink = 0;
    for (int round = 0; round < 3 && !in.empty(); ++round) {
      if (rx) {
        for (int i = 0; i < 64; ++i) {
          auto m = rx->try_peek();
          if (!m) {
            CheckTypedError(m.error());
            break;
          }
          CheckSpan(r, m->data(), m->size());
          for (std::byte b : *m) sink = sink ^ static_cast<uint8_t>(b);
          if (in.u8() & 1) {
            if (!rx->advance()) Fail("advance after a successful peek failed");
          } else {
            rx->release();
          }
        }
        rx->release();
      }
      if (tx) {
        for (int i = 0; i < 16; ++i) {
          const size_t n = in.u16() % (g.capacity + 16);
          auto buf = tx->try_reserve(n);
          if (!buf) {
            CheckTypedError(buf.error());
            // kClosed / kCorrupt may come first (the fuzzed control block); never "full".
            if (n > tx->max_message_size() && buf.error() == RingErrc::kWouldBlock) {
              Fail("oversize reserve reported kWouldBlock");
            }
            break;
          }
          if (buf->size() != n) Fail("reserved span of the wrong size");
          CheckSpan(r, buf->data(), buf->size());
          if (n) std::memset(buf->data(), 0xA5, n);
          if (in.u8() & 1) tx->commit();
        }
        if (in.u8() & 1) {
          tx->commit();
        } else {
          tx->cancel();
        }
      }
    }
    (void)sink;
  }
  fuzz::UnpoisonAll(base, seg->size());
  if (std::memcmp(header_before, base, sizeof(header_before)) != 0) {
    Fail("ring operations modified the segment header");
  }
}

}  // namespace
}  // namespace shmlink

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shmlink;
  Reader in(data, size);
  const uint8_t flags = in.u8();
  const uint16_t size_sel = in.u16();
  const int mode = flags & 3;
  const bool named = (flags & 4) != 0;

  size_t seg_size = 0;
  uint32_t rings = 1;
  uint64_t capacity = 0;
  if (mode >= 2) {
    rings = mode == 3 ? 2 : 1;
    capacity = uint64_t{256} << (size_sel & 7);  // 256 B .. 32 KiB
    seg_size = 4096 + rings * capacity;
    // Occasionally a file size that disagrees with the geometry.
    if (size_sel & 0x8) seg_size += (size_sel >> 4) & 0xFF8;
  } else {
    seg_size = size_sel != 0 ? size_sel : in.remaining();
  }
  if (seg_size > kMaxSegment) seg_size = kMaxSegment;

  std::vector<uint8_t> image(seg_size, 0);
  const size_t image_bytes = std::min(seg_size, in.remaining());
  if (image_bytes) std::memcpy(image.data(), in.rest(), image_bytes);
  // Op bytes: what follows the header part of the input drives the ring loops, so the
  // fuzzer controls the control block and records through the image as well.
  Reader ops(in.rest() + std::min<size_t>(in.remaining(), sizeof(SegmentHeader)),
             in.remaining() > sizeof(SegmentHeader) ? in.remaining() - sizeof(SegmentHeader) : 0);

  if (mode == 1) {
    const uint32_t kind = 1 + ((flags >> 3) & 3);
    FixHeader(image, kind, (flags & 0x20) != 0);
  } else if (mode >= 2 && image.size() >= 4096) {
    auto* h = reinterpret_cast<SegmentHeader*>(image.data());
    const uint64_t geometry[8] = {
        rings, capacity, sizeof(SegmentHeader), sizeof(SpscControl), 4096, 0, 0, 0};
    std::memcpy(h->geometry, geometry, sizeof(geometry));
    if (flags & 0x40) h->geometry[(flags >> 3) & 7] ^= uint64_t{1} << (size_sel >> 10);
    const uint32_t kind =
        static_cast<uint32_t>(rings == 2 ? SegmentKind::kConnection : SegmentKind::kSpscRing);
    FixHeader(image, kind, false);
    if (flags & 0x80) h->total_size = 4096 + rings * capacity;  // may disagree with the file
    h->checksum = HeaderChecksum(image.data());
  }

  Segment mapped = MakeMapping(image, named);
  if (!mapped.valid()) return 0;
  auto seg = std::make_shared<const Segment>(std::move(mapped));

  for (uint32_t kind = 0; kind <= 5; ++kind) {
    auto f = ValidateHeader(seg->data(), seg->size(), static_cast<SegmentKind>(kind));
    if (!f) {
      CheckTypedError(f.error());
    } else if (f->total_size != seg->size()) {
      Fail("validated header with total_size != mapped size");
    }
  }
  if (auto m = ValidateMpmcSegment(*seg); !m) CheckTypedError(m.error());
  const struct {
    SegmentKind kind;
    uint32_t rings;
  } layouts[] = {{SegmentKind::kSpscRing, 1},
                 {SegmentKind::kConnection, 2},
                 {SegmentKind::kSpscRing, 2},
                 {SegmentKind::kConnection, 1}};
  for (const auto& l : layouts) {
    auto g = ValidateSpscSegment(*seg, l.kind, l.rings);
    if (!g) {
      CheckTypedError(g.error());
      continue;
    }
    if (g->ring_count != l.rings) Fail("validated ring count differs");
    uint64_t end = g->data_offset + g->ring_count * g->capacity;
    if (end > seg->size() || g->data_offset < g->control_offset + l.rings * sizeof(SpscControl) ||
        g->control_offset < sizeof(SegmentHeader) || (g->capacity & (g->capacity - 1)) != 0) {
      Fail("validated geometry does not fit the mapping");
    }
    for (uint32_t i = 0; i < g->ring_count; ++i) ExerciseRing(seg, *g, i, ops);
  }
  return 0;
}
