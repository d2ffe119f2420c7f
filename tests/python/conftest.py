# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""Shared helpers for shmlink's Python tests."""
import contextlib
import os
import random
import signal
import tempfile
import threading
import time

import pytest


def unique_name(tag):
    return "/shmlink-pytest-%s-%d-%d" % (tag, os.getpid(), random.randrange(1 << 30))


def runfile(rel):
    """Path of a Bazel runfile (e.g. 'examples/python/numpy_producer'), or of the same
    file under bazel-bin when run outside Bazel."""
    for base in (os.environ.get("TEST_SRCDIR"), os.environ.get("RUNFILES_DIR")):
        if base:
            p = os.path.join(base, "shmlink", rel)
            if os.path.exists(p):
                return p
    here = os.path.dirname(os.path.abspath(__file__))
    p = os.path.join(here, "..", "..", "bazel-bin", rel)
    if os.path.exists(p):
        return p
    pytest.skip("runfile %s not found" % rel)


@pytest.fixture
def shm_name(request):
    name = unique_name(request.node.name[:20].replace("[", "-").replace("]", ""))
    yield name
    path = "/dev/shm" + name
    leftover = os.path.exists(path)
    if leftover:
        os.unlink(path)
    assert not leftover, "test left %s behind" % path


@pytest.fixture
def unix_path():
    """A socket path in a fresh temporary directory, both removed afterwards."""
    d = tempfile.mkdtemp(prefix="shmlink-pytest-")
    path = os.path.join(d, "sock")
    yield path
    if os.path.exists(path):
        os.unlink(path)
    os.rmdir(d)


@contextlib.contextmanager
def reaped(proc):
    """Yields the subprocess.Popen `proc`; on the way out kills it if it is still running,
    and waits for it."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@contextlib.contextmanager
def interrupted(after=0.2, within=3):
    """SIGINTs this process `after` seconds in; the block must end in KeyboardInterrupt,
    less than `within` seconds after it started."""
    t = threading.Timer(after, os.kill, (os.getpid(), signal.SIGINT))
    t.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        t.cancel()  # no stray SIGINT later if the block ended some other way
        t.join()
    assert time.monotonic() - t0 < within
