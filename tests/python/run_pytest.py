# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""Runs pytest on the test files named on the command line (paths relative to this file).

Bazel's py_test runs this with the test files as arguments; each pytest case lands in the
JUnit XML that Bazel expects at $XML_OUTPUT_FILE, so CI counts cases, not targets.
Exit code: pytest's, except that "no tests collected" (5) is a failure too.
"""
import os
import sys

import pytest


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    args = [os.path.join(here, f) for f in sys.argv[1:]]
    args += ["-p", "no:cacheprovider", "-q", "-rs", "-o", "faulthandler_timeout=120"]
    xml = os.environ.get("XML_OUTPUT_FILE")
    if xml:
        args += ["--junitxml", xml, "-o", "junit_family=xunit1"]
    rc = int(pytest.main(args))
    return 1 if rc == 5 else rc


if __name__ == "__main__":
    sys.exit(main())
