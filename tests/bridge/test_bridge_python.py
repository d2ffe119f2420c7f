# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""A C++ producer and exporting bridge on host A, a Python consumer on host B.

The Python side uses only `shmlink` (never zmq): it attaches by name to the ring the
importing bridge writes, exactly as it would to a local C++ producer's ring. Hosts are
two network namespaces joined by a veth pair, or loopback where that is not permitted.
"""
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

import pytest

import shmlink

FNV_OFFSET, FNV_PRIME = 1469598103934665603, 1099511628211
MASK = (1 << 64) - 1


def runfile(rel):
    for base in (os.environ.get("TEST_SRCDIR"), os.environ.get("RUNFILES_DIR")):
        if base and os.path.exists(os.path.join(base, "shmlink", rel)):
            return os.path.join(base, "shmlink", rel)
    p = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bazel-bin", rel)
    if os.path.exists(p):
        return p
    pytest.skip("runfile %s not found" % rel)


def fnv(h, data):
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK
    return h


def check(msg):
    """The sequence of a test message (bridge_test_util.h's format), or -1 if corrupt."""
    if len(msg) < 16:
        return -1
    seq, total = struct.unpack_from("<QQ", msg)
    return seq if fnv(fnv(FNV_OFFSET, msg[:8]), msg[16:]) == total else -1


class TwoHosts:
    """Namespaces A (10.77.0.1) and B (10.77.0.2) on a veth pair, or loopback."""

    def __init__(self):
        tag = "%d" % (os.getpid() % 100000)
        self.a, self.b = "shmlpyA-" + tag, "shmlpyB-" + tag
        cmds = [
            "ip netns add %s" % self.a, "ip netns add %s" % self.b,
            "ip link add pA%s netns %s type veth peer name pB%s netns %s" % (tag, self.a, tag, self.b),
            "ip -n %s addr add 10.77.0.1/24 dev pA%s" % (self.a, tag),
            "ip -n %s addr add 10.77.0.2/24 dev pB%s" % (self.b, tag),
            "ip -n %s link set pA%s up" % (self.a, tag), "ip -n %s link set pB%s up" % (self.b, tag),
            "ip -n %s link set lo up" % self.a, "ip -n %s link set lo up" % self.b,
        ]
        self.netns = all(subprocess.call(c.split(), stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL) == 0 for c in cmds)
        if not self.netns:
            self.close()
            print("bridge test: network namespaces not permitted here; using loopback ports",
                  file=sys.stderr)
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
            s.close()
            self.endpoint = "tcp://127.0.0.1:%d" % self.port
        else:
            self.endpoint = "tcp://10.77.0.1:7001"

    def on(self, host, argv):
        if not self.netns:
            return argv
        return ["ip", "netns", "exec", self.a if host == "A" else self.b] + argv

    def close(self):
        for ns in (self.a, self.b):
            subprocess.call(["ip", "netns", "del", ns], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


@pytest.fixture
def hosts():
    h = TwoHosts()
    yield h
    h.close()


def test_cpp_exporter_to_python_consumer(hosts):
    n = 20000
    src = "/shmlink-pytest-bridgeA-%d" % os.getpid()
    dst = "/shmlink-pytest-bridgeB-%d" % os.getpid()
    env = dict(os.environ, SHMLINK_BRIDGE_AUTHKEY="python interop key")
    bridge = runfile("bridge/shmlink-bridge")
    logs = tempfile.mkdtemp()
    procs = []
    try:
        with open(os.path.join(logs, "export.log"), "w") as el, \
                open(os.path.join(logs, "import.log"), "w") as il:
            procs.append(subprocess.Popen(
                hosts.on("A", [bridge, "export", "ring", src, "--bind", hosts.endpoint]),
                env=env, stderr=el))
            procs.append(subprocess.Popen(
                hosts.on("B", [bridge, "import", "ring", dst, "--connect", hosts.endpoint]),
                env=env, stderr=il))
            feed = subprocess.Popen([runfile("tests/bridge/bridge_feed"), src, str(n)])
            procs.append(feed)
            ring = None
            deadline = time.monotonic() + 20
            while ring is None:
                try:
                    ring = shmlink.Ring.attach(dst)
                except (FileNotFoundError, RuntimeError):  # not there, or not initialised yet
                    assert time.monotonic() < deadline, "the importing bridge made no ring"
                    time.sleep(0.01)
            got = 0
            with ring:
                while True:
                    try:
                        msg = ring.recv_bytes(timeout=30)
                    except EOFError:
                        break  # the C++ writer closed its ring on host A
                    assert check(msg) == got, "message %d lost, reordered or corrupt" % got
                    got += 1
            assert got == n
            assert feed.wait(20) == 0
            for p in procs[:2]:
                assert p.wait(20) == 0  # the end of the stream ends both bridges
    except BaseException:
        for name in ("export.log", "import.log"):
            print(open(os.path.join(logs, name)).read(), file=sys.stderr)
        raise
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for name in (src, dst):
            if os.path.exists("/dev/shm" + name):
                os.unlink("/dev/shm" + name)


if __name__ == "__main__":
    args = [__file__, "-p", "no:cacheprovider", "-q", "-rs"]
    if os.environ.get("XML_OUTPUT_FILE"):
        args += ["--junitxml", os.environ["XML_OUTPUT_FILE"], "-o", "junit_family=xunit1"]
    rc = int(pytest.main(args))
    sys.exit(1 if rc == 5 else rc)
