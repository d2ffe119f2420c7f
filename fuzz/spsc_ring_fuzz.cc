// fuzz-srcs: ringbuf/ring_error.cc ringbuf/futex.cc ringbuf/process_identity.cc ringbuf/segment.cc
// fuzz-srcs: ringbuf/segment_header.cc ringbuf/spsc_layout.cc ringbuf/spsc_ring.cc ringbuf/log.cc
// fuzz-srcs: ringbuf/readiness_notifier.cc ringbuf/holder_lock.cc
// fuzz-libs: -lpthread
// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Fuzz target: consuming (and producing into) an SPSC ring that another process corrupts.
//
// A valid ring lives in a real memfd mapping. The input is a program: each byte picks an
// operation of the producer handle, of the consumer handle, or of a hostile peer that
// writes the shared control block and data region directly (positions set to arbitrary
// or unaligned values, record lengths and types overwritten, closed flags, owner words),
// as a process with write access to the segment could at any moment between calls.
//
// Checked on every input:
//  - every call returns a value or a typed error (RingErrc / errno), never crashes;
//  - every span handed out lies inside the ring's data region; the segment header and
//    the slack around the control block and data region are ASan-poisoned, so an access
//    the ring makes outside its own memory is reported;
//  - until the first corruption, a FIFO model: the consumer sees exactly the committed
//    messages, in order, with their contents; nothing reserved but uncommitted is ever
//    visible; the producer resumes after the last commit and the consumer after the last
//    release when their handles are re-created (the crash-recovery path).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "fuzz/shm_fuzz_util.h"

#include <shmlink/segment.h>
#include <shmlink/segment_header.h>
#include <shmlink/spsc_layout.h>
#include <shmlink/spsc_ring.h>

namespace shmlink {
namespace {

using fuzz::CheckTypedError;
using fuzz::Fail;
using fuzz::Reader;

uint8_t PatternByte(uint64_t seq, size_t k) { return static_cast<uint8_t>(seq * 31 + k * 7 + 1); }

void Fill(std::span<std::byte> buf, uint64_t seq) {
  for (size_t k = 0; k < buf.size(); ++k) buf[k] = std::byte{PatternByte(seq, k)};
}

bool Matches(std::span<const std::byte> msg, uint64_t seq) {
  for (size_t k = 0; k < msg.size(); ++k) {
    if (msg[k] != std::byte{PatternByte(seq, k)}) return false;
  }
  return true;
}

// What an uncorrupted ring must do, message by message.
struct Model {
  std::vector<uint32_t> committed;  // length of message seq
  std::vector<uint32_t> pending;    // reserved, not committed
  uint64_t next = 0;                // next message the consumer will peek
  uint64_t released = 0;            // messages [0, released) freed
  bool peeked = false;
  bool writer_closed = false;
  bool reader_closed = false;
  bool corrupted = false;
};

class Harness {
 public:
  Harness(std::shared_ptr<const Segment> seg, SpscGeometry g)
      : seg_(std::move(seg)), g_(g), region_(SpscRegionAt(*seg_, g_, 0)) {}

  void Run(Reader& in) {
    ClaimProducer();
    ClaimConsumer();
    for (int steps = 0; steps < 4096 && !in.empty(); ++steps) Step(in);
    tx_.reset();
    rx_.reset();
  }

 private:
  void ClaimProducer() {
    auto p = SpscProducer::Claim(seg_, region_);
    if (!p) {
      CheckTypedError(p.error());
      if (!m_.corrupted) Fail("producer claim failed on an intact ring");
      return;
    }
    tx_.emplace(std::move(*p));
  }
  void ClaimConsumer() {
    auto c = SpscConsumer::Claim(seg_, region_);
    if (!c) {
      CheckTypedError(c.error());
      if (!m_.corrupted) Fail("consumer claim failed on an intact ring");
      return;
    }
    rx_.emplace(std::move(*c));
  }

  void CheckSpan(const std::byte* p, size_t n) const {
    if (n > SpscMaxMessageSize(g_.capacity)) Fail("span longer than max_message_size");
    if (n == 0) return;
    if (p < region_.data || p + n > region_.data + g_.capacity) Fail("span outside the ring");
  }

  void Reserve(size_t n) {
    if (!tx_) return;
    auto buf = tx_->try_reserve(n);
    if (!buf) {
      CheckTypedError(buf.error());
      if (!m_.corrupted) {
        if (n > tx_->max_message_size()) {
          if (buf.error() != RingErrc::kTooLarge && buf.error() != RingErrc::kClosed) {
            Fail("oversize reserve: wrong error");
          }
        } else if (buf.error() != RingErrc::kWouldBlock && buf.error() != RingErrc::kClosed) {
          Fail("reserve on an intact ring: unexpected error");
        }
        if (buf.error() == RingErrc::kClosed && !m_.writer_closed && !m_.reader_closed) {
          Fail("reserve said closed, nobody closed");
        }
      }
      return;
    }
    if (buf->size() != n) Fail("reserved span has the wrong size");
    CheckSpan(buf->data(), buf->size());
    // A reader's close() is noticed lazily (on the slow path, when the producer's cached
    // free space runs out), so only the producer's own close must stop reservations.
    if (!m_.corrupted && m_.writer_closed) Fail("reserve after the producer closed");
    const uint64_t seq = m_.committed.size() + m_.pending.size();
    Fill(*buf, seq);
    m_.pending.push_back(static_cast<uint32_t>(n));
  }

  void Commit() {
    if (!tx_) return;
    tx_->commit();
    m_.committed.insert(m_.committed.end(), m_.pending.begin(), m_.pending.end());
    m_.pending.clear();
  }

  void Peek() {
    if (!rx_) return;
    auto msg = rx_->try_peek();
    if (!msg) {
      CheckTypedError(msg.error());
      if (m_.corrupted) return;
      if (msg.error() == RingErrc::kWouldBlock || msg.error() == RingErrc::kClosed) {
        if (m_.next < m_.committed.size()) Fail("committed message not delivered");
        if (msg.error() == RingErrc::kClosed && !m_.writer_closed) Fail("closed, nobody closed");
        if (msg.error() == RingErrc::kWouldBlock && m_.writer_closed) Fail("drained, not closed");
        return;
      }
      Fail("peek on an intact ring: unexpected error");
    }
    CheckSpan(msg->data(), msg->size());
    volatile uint8_t sink = 0;
    for (std::byte b : *msg) sink = sink ^ static_cast<uint8_t>(b);  // must be readable
    (void)sink;
    if (m_.corrupted) return;
    if (m_.next >= m_.committed.size()) Fail("delivered a message that was not committed");
    if (msg->size() != m_.committed[m_.next]) Fail("delivered message has the wrong length");
    if (!Matches(*msg, m_.next)) Fail("delivered message has the wrong contents");
    m_.peeked = true;
  }

  void Advance() {
    if (!rx_) return;
    auto r = rx_->advance();
    if (!r) {
      CheckTypedError(r.error());
      if (!m_.corrupted && m_.peeked) Fail("advance after peek failed");
      return;
    }
    if (!m_.corrupted && !m_.peeked) Fail("advance without peek succeeded");
    m_.next++;
    m_.peeked = false;
  }

  void Release() {
    if (!rx_) return;
    rx_->release();
    if (m_.peeked) m_.next++;
    m_.peeked = false;
    m_.released = m_.next;
  }

  void RecvCopy() {
    if (!rx_ || m_.peeked) return;  // keep the model simple: only from a clean state
    std::byte buf[4096];
    auto n = rx_->try_recv(buf);
    if (!n) {
      CheckTypedError(n.error());
      return;
    }
    if (*n > sizeof(buf)) Fail("try_recv returned more than the buffer");
    if (m_.corrupted) return;
    if (m_.next >= m_.committed.size() || *n != m_.committed[m_.next] ||
        !Matches(std::span<const std::byte>(buf, *n), m_.next)) {
      Fail("try_recv delivered the wrong message");
    }
    m_.next++;
    m_.released = m_.next;
  }

  // A hostile peer writing the shared memory directly.
  void Corrupt(uint8_t what, Reader& in) {
    SpscControl* ctl = region_.control;
    const uint64_t cap = g_.capacity;
    m_.corrupted = true;
    switch (what % 8) {
      case 0: {  // write_pos nudged (possibly unaligned) or set arbitrarily
        const uint8_t how = in.u8();
        uint64_t w = ctl->write_pos.load();
        w = (how & 1) ? in.u64() : w + static_cast<int8_t>(how);
        ctl->write_pos.store(w);
        break;
      }
      case 1: {
        const uint8_t how = in.u8();
        uint64_t r = ctl->read_pos.load();
        r = (how & 1) ? in.u64() : r + static_cast<int8_t>(how);
        ctl->read_pos.store(r);
        break;
      }
      case 2: {                                             // a record header overwritten
        const uint64_t align_mask = (in.u8() & 1) ? 0 : 7;  // aligned or not
        const uint64_t off = (in.u16() % (cap - 7)) & ~align_mask;
        RecordHeader h{in.u32(), 0};
        const uint8_t t = in.u8();
        h.type = t < 100 ? kRecordData : t < 200 ? kRecordPadding : in.u32();
        std::memcpy(region_.data + off, &h, sizeof(h));
        break;
      }
      case 3:  // payload bytes flipped
        region_.data[in.u16() % cap] ^= std::byte{in.u8()};
        break;
      case 4:
        ctl->writer_closed.store(in.u8() & 1);
        break;
      case 5:
        ctl->reader_closed.store(in.u8() & 1);
        break;
      case 6:  // owner words freed or scribbled over
        ((in.u8() & 1) ? ctl->producer_owner : ctl->consumer_owner)
            .store(in.u8() & 1 ? 0 : in.u64());
        break;
      case 7:  // event words (a sleeper counter left high, a bumped sequence)
        ctl->data_event.waiters.store(in.u8() & 3);
        ctl->space_event.seq.fetch_add(1);
        break;
    }
  }

  void Step(Reader& in) {
    const uint8_t op = in.u8();
    if (trace_) {
      std::fprintf(stderr, "op %2d  committed=%zu pending=%zu next=%lu released=%lu peeked=%d\n",
                   op % 16, m_.committed.size(), m_.pending.size(),
                   static_cast<unsigned long>(m_.next), static_cast<unsigned long>(m_.released),
                   m_.peeked);
    }
    switch (op % 16) {
      case 0:
      case 1:
      case 2: {
        // Mostly small messages, sometimes up to and past the maximum.
        const uint16_t v = in.u16();
        Reserve((v & 0x8000) ? v % (g_.capacity + 32) : v % 64);
        break;
      }
      case 3:
      case 4:
        Commit();
        break;
      case 5:
        if (tx_) {
          tx_->cancel();
          m_.pending.clear();
        }
        break;
      case 6:
      case 7:
        Peek();
        break;
      case 8:
        Advance();
        break;
      case 9:
      case 10:
        Release();
        break;
      case 11:
        RecvCopy();
        break;
      case 12:  // the producer dies (handle dropped: uncommitted work lost) and restarts
        if (tx_) {
          tx_.reset();
          m_.pending.clear();
        }
        ClaimProducer();
        break;
      case 13:  // the consumer detaches and a new one takes over after the last release
        if (rx_) {
          rx_.reset();  // the destructor frees messages advanced past, not a peeked one
          m_.released = m_.next;
          m_.peeked = false;
        }
        ClaimConsumer();
        if (!m_.corrupted && rx_ && m_.peeked) Fail("model");
        break;
      case 14:
        if (op & 0x10) {
          if (tx_) {
            tx_->close();
            m_.committed.insert(m_.committed.end(), m_.pending.begin(), m_.pending.end());
            m_.pending.clear();
            m_.writer_closed = true;
          }
        } else if (rx_) {
          rx_->close();
          if (m_.peeked) m_.next++;
          m_.peeked = false;
          m_.released = m_.next;
          m_.reader_closed = true;
        }
        break;
      case 15:
        Corrupt(op >> 4, in);
        break;
    }
  }

  std::shared_ptr<const Segment> seg_;
  SpscGeometry g_;
  SpscRegion region_;
  std::optional<SpscProducer> tx_;
  std::optional<SpscConsumer> rx_;
  Model m_;
  // SPSC_FUZZ_TRACE=1 prints each operation (for reproducing a crash input by hand).
  const bool trace_ = std::getenv("SPSC_FUZZ_TRACE") != nullptr;
};

}  // namespace
}  // namespace shmlink

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shmlink;
  Reader in(data, size);
  const unsigned cap_index = in.u8() & 3;
  const uint64_t capacity = uint64_t{256} << cap_index;  // 256 B .. 2 KiB
  // One real memfd mapping per capacity, made once and re-initialised for every input
  // (zeroed, then InitSpscSegment as a creator would): the ring code sees a fresh segment
  // while the fuzzer does not pay memfd_create/fallocate/mmap per execution.
  static std::shared_ptr<const Segment> segments[4];
  std::shared_ptr<const Segment>& seg = segments[cap_index];
  if (!seg) {
    auto bytes = SpscSegmentSize(1, capacity);
    if (!bytes) Fail("SpscSegmentSize rejected a valid capacity");
    auto made = Segment::CreateAnonymous(*bytes);
    if (!made) Fail("cannot create a memfd segment");
    seg = std::make_shared<const Segment>(std::move(*made));
  }
  std::memset(seg->data(), 0, seg->size());
  InitSpscSegment(*seg, SegmentKind::kSpscRing, 1, capacity);
  auto g = ValidateSpscSegment(*seg, SegmentKind::kSpscRing, 1);
  if (!g) Fail("a freshly initialised ring does not validate");
  // Only the control block and the data region may be touched by ring operations.
  const fuzz::Allowed allowed[] = {
      {static_cast<size_t>(g->control_offset),
       static_cast<size_t>(g->control_offset + sizeof(SpscControl))},
      {static_cast<size_t>(g->data_offset), static_cast<size_t>(g->data_offset + capacity)}};
  fuzz::PoisonAllExcept(seg->data(), seg->size(), allowed, 2);
  {
    Harness h(seg, *g);
    h.Run(in);
  }
  fuzz::UnpoisonAll(seg->data(), seg->size());
  if (seg.use_count() != 1) Fail("a ring handle outlived the input");
  return 0;
}
