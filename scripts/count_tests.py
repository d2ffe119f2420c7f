#!/usr/bin/env python3
# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""Counts individual test cases in Bazel test.xml files.

usage: count_tests.py TESTLOGS_DIR LABEL [LABEL ...]
Reads TESTLOGS_DIR/<package>/<name>/test.xml for each //package:name label and prints
"<passed> <failed> <skipped>". A label without a test.xml counts as one failed case.
"""
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def count(xml_path):
    passed = failed = skipped = 0
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError):
        return 0, 1, 0
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is not None or case.get("status") == "notrun" \
                or case.get("result") == "skipped":
            skipped += 1
        else:
            passed += 1
    if passed + failed + skipped == 0:
        # A target that ran no case: trust the suite-level counters if any.
        fails = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in root.iter("testsuite"))
        return (0, 1, 0) if fails else (0, 0, 0)
    return passed, failed, skipped


def main():
    logs = Path(sys.argv[1])
    totals = [0, 0, 0]
    for label in sys.argv[2:]:
        pkg, name = label.lstrip("/").split(":")
        p, f, s = count(logs / pkg / name / "test.xml")
        if f:
            print(f"  failed cases in {label}: {f}", file=sys.stderr)
        totals = [a + b for a, b in zip(totals, (p, f, s))]
    print(*totals)


if __name__ == "__main__":
    main()
