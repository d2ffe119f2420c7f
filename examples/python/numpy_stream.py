# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""C++ -> Python NumPy stream by shared-memory name, without copying the arrays.

    python3 numpy_stream.py [PATH_TO_numpy_producer]

Creates the ring /shmlink-example-<pid>-<random>, starts the C++ producer (bazel build
//examples/python:numpy_producer) which writes 100 float64 arrays of 256 x 256 in place
into the ring, and receives them with Ring.recv_array(): each array's data lies inside the
shared mapping (checked below); nothing is copied on the Python side.
"""
import os
import secrets
import subprocess
import sys

import shmlink


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    producer = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "..", "..", "bazel-bin", "examples", "python", "numpy_producer")
    name = "/shmlink-example-%d-%s" % (os.getpid(), secrets.token_hex(4))
    with shmlink.Ring.create(name, 1 << 22) as ring:
        base, size = ring.mapping_range()
        p = subprocess.Popen([producer, name, "100", "256", "256"])
        count, total = 0, 0.0
        while True:
            try:
                a = ring.recv_array(timeout=30)
            except EOFError:
                break
            assert base <= a.ctypes.data < base + size  # in shared memory: no copy
            total += float(a[0, 0])
            count += 1
            del a  # frees its ring space
        p.wait()
    print("received %d arrays without copying, sum of first elements %.0f" % (count, total))


if __name__ == "__main__":
    main()
