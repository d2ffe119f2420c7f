#!/usr/bin/python3
# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""Smoke test of //bench:compare: runs it on a cheap subset and checks its output.

Runs `compare --quick --systems pipe,boost-message-queue --sizes 64,4096` with tiny
repetitions and checks every JSON Lines record (the project's benchmark schema plus
reps and min/max spread), the Markdown report and, if gnuplot is installed, the PNGs.
No timing assertions: only that the figures exist, are positive and consistent.
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

# The benchmark schema's system names (records must use these).
SYSTEMS = {
    "shmlink-spsc", "shmlink-spsc-sleep", "shmlink-mpmc", "shmlink-connection",
    "python-shmlink-queue", "python-shmlink-pipe", "python-shmlink-ring",
    "unix-socketpair", "unix-socket-framed", "pipe", "tcp-loopback",
    "iceoryx", "boost-message-queue", "mutex-queue",
    "python-mp-queue", "python-mp-pipe", "python-mp-listener",
    "floor-cacheline", "floor-memcpy",
}
SELECTED = ["pipe", "boost-message-queue"]
SIZES = [64, 4096]
REPS = 2


def compare_binary():
    for cand in ("bench/compare", os.path.join(os.path.dirname(__file__), "compare")):
        if os.access(cand, os.X_OK):
            return cand
    raise FileNotFoundError("bench/compare not in runfiles")


class CompareSmokeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="compare-test-", dir=os.environ.get("TEST_TMPDIR"))
        cls.json_path = os.path.join(cls.tmp, "records.jsonl")
        env = dict(os.environ)
        env.pop("BUILD_WORKSPACE_DIRECTORY", None)
        env.pop("BUILD_WORKING_DIRECTORY", None)
        cls.proc = subprocess.run(
            [compare_binary(), "--quick", "--systems", ",".join(SELECTED), "--sizes",
             ",".join(map(str, SIZES)), "--reps", str(REPS), "--seconds", "0.05",
             "--json=" + cls.json_path, "--out", cls.tmp],
            capture_output=True, text=True, timeout=120, env=env)
        with open(cls.json_path) as f:
            cls.records = [json.loads(l) for l in f if l.startswith("{")]

    def test_exit_code_and_progress(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stderr[-2000:])
        # one progress line per case on stderr
        for system in SELECTED:
            self.assertIn("] %s throughput 64 B:" % system, self.proc.stderr)
            self.assertIn("] %s rtt 4 KiB:" % system, self.proc.stderr)

    def test_every_case_has_a_valid_record(self):
        seen = set()
        for r in self.records:
            self.assertIn(r["system"].split(":")[0], SYSTEMS, r)
            self.assertNotIn("error", r, r)
            self.assertIn(r["pattern"], ("throughput", "rtt"))
            self.assertIsInstance(r["size"], int)
            self.assertEqual(r["reps"], REPS)
            if r["pattern"] == "throughput":
                metrics = ["msgs_per_s", "bytes_per_s"]
                self.assertAlmostEqual(r["bytes_per_s"], r["msgs_per_s"] * r["size"],
                                       delta=1e-6 * r["bytes_per_s"])
            else:
                metrics = ["p50_ns", "p99_ns", "p999_ns"]
                self.assertLessEqual(r["p50_ns"], r["p99_ns"])
                self.assertLessEqual(r["p99_ns"], r["p999_ns"])
            for m in metrics:
                self.assertGreater(r[m], 0, r)
                self.assertLessEqual(r[m + "_min"], r[m], r)
                self.assertLessEqual(r[m], r[m + "_max"], r)
            seen.add((r["system"], r["pattern"], r["size"]))
        want = {(s, p, z) for s in SELECTED for p in ("throughput", "rtt") for z in SIZES}
        self.assertEqual(seen, want)

    def test_report(self):
        with open(os.path.join(self.tmp, "compare.md")) as f:
            md = f.read()
        self.assertIn("Machine:", md)
        self.assertIn("### Throughput", md)
        self.assertIn("### Round trip", md)
        self.assertIn("### Targets", md)
        for system in SELECTED:
            self.assertIn("| 64 B | %s |" % system, md)
        # Every case was bracketed by machine samples; --quick never reruns.
        self.assertIn("### Was the run disturbed?", md)
        self.assertIn(" of %d cases flagged or rerun." % len(self.records), md)
        self.assertNotIn("compare: rerunning", self.proc.stderr)
        # Records the report flags carry the verdict in their note.
        flagged = [r for r in self.records if "disturbed:" in r.get("note", "")
                   or "shaky:" in r.get("note", "")]
        for r in flagged:
            self.assertIn("| %s %s | " % (r["system"], r["pattern"]), md)
        self.assertEqual(md, self.proc.stdout)

    def test_plots(self):
        if not os.access("/usr/bin/gnuplot", os.X_OK):
            self.skipTest("gnuplot not installed")
        for name in ("throughput.png", "rtt.png"):
            with open(os.path.join(self.tmp, name), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_unknown_system_is_rejected(self):
        p = subprocess.run([compare_binary(), "--systems", "no-such-system"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown system", p.stderr)


if __name__ == "__main__":
    unittest.main()
