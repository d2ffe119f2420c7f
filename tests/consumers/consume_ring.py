# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""consume_ring.py NAME: attach to a C++ producer's ring by name and check its messages.

Run by the consumer tests with the Python package installed (venv or install tree): it
must come from the installation, not from the source tree.
"""
import os
import sys
import time

import shmlink

MESSAGES = 10000


def expected(i):
    return i.to_bytes(8, "little") + bytes((i * 7 + k) & 0xFF for k in range(8, 8 + i % 200))


def producer_running(pid):
    # The producer is our sibling: after it exits it stays a zombie until reaped.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def main(name):
    print("shmlink", shmlink.__version__, "from", shmlink.__file__)
    want = os.environ.get("SHMLINK_EXPECTED_VERSION")
    if want and shmlink.__version__ != want:
        sys.exit(f"shmlink.__version__ is {shmlink.__version__}, VERSION says {want}")
    deadline = time.monotonic() + 30
    while True:
        try:
            ring = shmlink.Ring.attach(name)
            break
        except FileNotFoundError:
            producer = os.environ.get("SHMLINK_PRODUCER_PID")
            if producer and not producer_running(producer):
                sys.exit("the producer exited before creating its ring")
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    for i in range(MESSAGES):
        got = ring.recv_bytes(timeout=30)
        if got != expected(i):
            sys.exit(f"message {i}: got {len(got)} bytes, not the expected ones")
    try:
        ring.recv_bytes(timeout=30)
    except EOFError:
        pass
    else:
        sys.exit("no end of stream after the last message")
    ring.close()
    print(f"consume_ring: {MESSAGES} messages checked")


if __name__ == "__main__":
    main(sys.argv[1])
