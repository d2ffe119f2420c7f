"""Shared helpers for shmlink's Python tests."""
import os
import random

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
