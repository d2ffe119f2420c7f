// Copyright shmlink authors. SPDX-License-Identifier: MIT
//
// Golden output of the `shmlink` human formats and the JSON schema of its reports, from
// hand-built SegmentReports (the formatters are pure: no clock, no /proc).
#include "cli/report_format.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace shmlink::cli {
namespace {

constexpr int64_t kCreated = 1796000000;  // 2026-11-30T00:53:20Z

Holder MakeHolder(const char* role, uint32_t pid, HolderState s, const char* why) {
  Holder h;
  h.role = role;
  h.pid = pid;
  h.start_ticks = 1000 + pid;
  h.state = s;
  h.why = why;
  return h;
}

SegmentReport Ring() {
  SegmentReport r;
  r.name = "/feed";
  r.cls = FileClass::kSegment;
  r.file_size = 1052672;
  r.mode = 0600;
  r.uid = 1000;
  r.created_unix = kCreated;
  r.version = 3;
  r.kind = 1;
  r.kind_name = "spsc-ring";
  r.capacity = 1 << 20;
  r.fill = 3000;
  r.holders = {MakeHolder("creator", 4242, HolderState::kAlive, "process 4242 is running"),
               MakeHolder("producer", 4242, HolderState::kAlive, "process 4242 is running"),
               MakeHolder("consumer", 4250, HolderState::kUnknown,
                          "cannot read /proc/4250/stat: Permission denied")};
  RingReport ring;
  ring.capacity = 1 << 20;
  ring.write_pos = 123000;
  ring.read_pos = 120000;
  ring.data_waiters = 1;
  ring.producer = {1000, 100000, 2, 1, 1, 5, 0};
  ring.consumer = {970, 97000, 40, 30, 28, 1, 1};
  r.rings = {ring};
  r.mapped_by = {4242, 4250};
  r.verdict = "in use: a holder is alive";
  return r;
}

SegmentReport StaleQueue() {
  SegmentReport r;
  r.name = "/jobs";
  r.cls = FileClass::kSegment;
  r.file_size = 65536;
  r.mode = 0600;
  r.uid = 1000;
  r.created_unix = kCreated;
  r.version = 3;
  r.kind = 3;
  r.kind_name = "mpmc-queue";
  r.capacity = 16;
  r.fill = 6;
  r.holders = {MakeHolder("creator", 77, HolderState::kDead, "no process 77"),
               MakeHolder("handle0.producer", 77, HolderState::kDead, "no process 77")};
  QueueReport q;
  q.slot_count = 16;
  q.max_message_size = 64;
  q.enqueue_pos = 10;
  q.dequeue_pos = 4;
  q.abandoned = 1;
  q.produced = {9, 90, 0, 0, 0, 0, 0};
  q.consumed = {4, 40, 0, 0, 0, 0, 0};
  r.queue = q;
  r.stale = true;
  r.verdict = "stale: every holder is dead and nobody maps it";
  return r;
}

SegmentReport Damaged(const char* name, FileClass cls, uint64_t size, const char* problem) {
  SegmentReport r;
  r.name = name;
  r.cls = cls;
  r.file_size = size;
  r.mode = 0644;
  r.created_unix = kCreated;
  r.problem = problem;
  r.verdict = std::string("kept: ") + problem;
  return r;
}

TEST(ReportFormatTest, ListGolden) {
  const std::vector<SegmentReport> reports = {
      Ring(), StaleQueue(), Damaged("/junk", FileClass::kForeign, 12, "not a shmlink segment"),
      Damaged("/half", FileClass::kTruncated, 100, "shorter than a segment header (100 bytes)")};
  const std::string golden =
      "NAME                             KIND          VER      SIZE  CAPACITY      FILL CREATED  "
      "            STATUS     HOLDERS\n"
      "/feed                            spsc-ring       3   1.0 MiB     1 MiB   2.9 KiB "
      "2026-11-30T00:53:20Z in-use     creator 4242 alive, producer 4242 alive, consumer 4250 "
      "unknown\n"
      "/jobs                            mpmc-queue      3    64 KiB  16 slots         6 "
      "2026-11-30T00:53:20Z stale      creator 77 dead, handle0.producer 77 dead\n"
      "/junk                            -               -      12 B         -         - "
      "2026-11-30T00:53:20Z foreign    - (not a shmlink segment)\n"
      "/half                            -               -     100 B         -         - "
      "2026-11-30T00:53:20Z truncated  - (shorter than a segment header (100 bytes))\n";
  EXPECT_EQ(FormatList(reports), golden);
}

TEST(ReportFormatTest, InspectGolden) {
  const std::string golden =
      "name:       /feed\n"
      "status:     in-use (in use: a holder is alive)\n"
      "kind:       spsc-ring\n"
      "layout:     version 3\n"
      "file:       1.0 MiB, mode 0600, uid 1000, created 2026-11-30T00:53:20Z\n"
      "holders:\n"
      "    creator            pid 4242     alive    process 4242 is running\n"
      "    producer           pid 4242     alive    process 4242 is running\n"
      "    consumer           pid 4250     unknown  cannot read /proc/4250/stat: Permission "
      "denied\n"
      "mapped by:  pid 4242 4250\n"
      "ring 0:     capacity 1 MiB, write_pos 123000, read_pos 120000, fill 2.9 KiB\n"
      "    waiters   data 1  space 0\n"
      "    producer  messages 1000  bytes 100000  waits 2  sleeps 1  wakeups 1  wake_calls 5  "
      "takeovers 0\n"
      "    consumer  messages 970  bytes 97000  waits 40  sleeps 30  wakeups 28  wake_calls 1  "
      "takeovers 1\n";
  EXPECT_EQ(FormatInspect(Ring()), golden);
}

TEST(ReportFormatTest, InspectQueueGolden) {
  const std::string golden =
      "name:       /jobs\n"
      "status:     stale (stale: every holder is dead and nobody maps it)\n"
      "kind:       mpmc-queue\n"
      "layout:     version 3\n"
      "file:       64 KiB, mode 0600, uid 1000, created 2026-11-30T00:53:20Z\n"
      "holders:\n"
      "    creator            pid 77       dead     no process 77\n"
      "    handle0.producer   pid 77       dead     no process 77\n"
      "queue:      16 slots of up to 64 B, enqueue_pos 10, dequeue_pos 4, fill 6\n"
      "    waiters   not_empty 0  not_full 0\n"
      "    recovery  abandoned 1  redelivered 0  orphans 0  recoveries 0\n"
      "    produced  messages 9  bytes 90  waits 0  sleeps 0  wakeups 0  wake_calls 0  "
      "takeovers 0\n"
      "    consumed  messages 4  bytes 40  waits 0  sleeps 0  wakeups 0  wake_calls 0  "
      "takeovers 0\n";
  EXPECT_EQ(FormatInspect(StaleQueue()), golden);
}

TEST(ReportFormatTest, WatchLineGolden) {
  SegmentReport before = Ring(), after = Ring();
  after.rings[0].producer.messages += 2000;
  after.rings[0].producer.bytes += 200000;
  after.rings[0].consumer.messages += 1990;
  after.rings[0].consumer.bytes += 199000;
  after.rings[0].consumer.wakeups += 4;
  const WatchSample s = MakeWatchSample(before, after, 2.0, kCreated);
  EXPECT_DOUBLE_EQ(s.produced_msgs_per_s, 1000.0);
  EXPECT_DOUBLE_EQ(s.consumed_bytes_per_s, 99500.0);
  EXPECT_DOUBLE_EQ(s.wakeups_per_s, 2.0);
  EXPECT_EQ(FormatWatchHeader(),
            "TIME                   IN msg/s     IN B/s  OUT msg/s    OUT B/s       FILL  WAITERS  "
            "wakeups/s   DROPS   REDELIV\n");
  EXPECT_EQ(FormatWatchLine(s),
            "2026-11-30T00:53:20Z      1.00k    100.00k      995.0     99.50k       3000        1 "
            "       2.0       0         0\n");
}

// Every key the docs promise, with its JSON type.
TEST(ReportFormatTest, JsonSchema) {
  const nlohmann::json j = ReportJson(Ring(), true);
  for (const char* k : {"name", "class", "status", "verdict", "problem", "kind", "created"}) {
    EXPECT_TRUE(j.at(k).is_string()) << k;
  }
  for (const char* k : {"version", "size", "capacity", "fill", "mode", "uid"}) {
    EXPECT_TRUE(j.at(k).is_number_unsigned()) << k;
  }
  EXPECT_TRUE(j.at("stale").is_boolean());
  EXPECT_TRUE(j.at("mapped_by").is_array());
  ASSERT_EQ(j.at("holders").size(), 3u);
  for (const char* k : {"role", "state", "why"}) EXPECT_TRUE(j["holders"][0].at(k).is_string());
  EXPECT_EQ(j["holders"][2]["state"], "unknown");
  ASSERT_EQ(j.at("rings").size(), 1u);
  for (const char* side : {"producer", "consumer"}) {
    for (const char* k :
         {"messages", "bytes", "waits", "sleeps", "wakeups", "wake_calls", "takeovers"}) {
      EXPECT_TRUE(j["rings"][0][side].at(k).is_number_unsigned()) << side << "." << k;
    }
  }
  EXPECT_TRUE(j.at("queue").is_null());
  EXPECT_TRUE(j.at("object").is_null());
  const nlohmann::json summary = ReportJson(StaleQueue(), false);
  EXPECT_FALSE(summary.contains("rings"));
  EXPECT_TRUE(summary.at("stale").get<bool>());
  EXPECT_EQ(summary.at("status"), "stale");
  const nlohmann::json q = ReportJson(StaleQueue(), true).at("queue");
  for (const char* k : {"slot_count", "max_message_size", "enqueue_pos", "dequeue_pos", "fill",
                        "abandoned", "redelivered", "orphans", "recoveries"}) {
    EXPECT_TRUE(q.at(k).is_number_unsigned()) << k;
  }
  const nlohmann::json w = WatchJson("/feed", MakeWatchSample(Ring(), Ring(), 1.0, kCreated));
  for (const char* k : {"produced_msgs_per_s", "produced_bytes_per_s", "consumed_msgs_per_s",
                        "consumed_bytes_per_s", "wakeups_per_s", "interval", "ts"}) {
    EXPECT_TRUE(w.at(k).is_number()) << k;
  }
}

TEST(ReportFormatTest, HumanBytes) {
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1023), "1023 B");
  EXPECT_EQ(HumanBytes(4096), "4 KiB");
  EXPECT_EQ(HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(HumanBytes(uint64_t{1} << 30), "1 GiB");
}

}  // namespace
}  // namespace shmlink::cli
