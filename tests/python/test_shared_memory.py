# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""shmlink.shared_memory: the stdlib's API, without the resource tracker's removal of
segments by processes that merely attached."""
import multiprocessing as mp
import os
import subprocess
import sys
import textwrap

import pytest

import shmlink
from shmlink.shared_memory import ShareableList, SharedMemory


def _attach_and_exit(name):
    s = SharedMemory(name)
    s.buf[0] = 42
    s.close()


def _exists(name):
    return os.path.exists("/dev/shm/" + name)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_attacher_exit_does_not_remove_the_segment(method):
    shm = SharedMemory(create=True, size=4096)
    try:
        p = mp.get_context(method).Process(target=_attach_and_exit, args=(shm.name,))
        p.start()
        p.join(30)
        assert p.exitcode == 0
        assert shm.buf[0] == 42
        assert _exists(shm.name)  # the stdlib's tracker would have unlinked it here
        again = SharedMemory(shm.name)
        assert again.size == shm.size
        again.close()
    finally:
        shm.close()
        shm.unlink()
    assert not _exists(shm.name)


def test_api_like_the_stdlib():
    with pytest.raises(ValueError):
        SharedMemory(create=True, size=0)
    with pytest.raises(ValueError):
        SharedMemory()
    with pytest.raises(FileNotFoundError):
        SharedMemory("shmlink-pytest-no-such-segment")
    shm = SharedMemory(create=True, size=100)
    try:
        with pytest.raises(FileExistsError):
            SharedMemory(shm.name, create=True, size=100)
        assert not shm.name.startswith("/") and shm.size >= 100
        shm.buf[:5] = b"hello"
        clone = mp.reduction.ForkingPickler.loads(mp.reduction.ForkingPickler.dumps(shm))
        assert bytes(clone.buf[:5]) == b"hello"
        clone.close()
    finally:
        shm.close()
        shm.unlink()


def test_creator_exit_removes_what_it_did_not_unlink_unless_untracked():
    code = textwrap.dedent("""
        from shmlink.shared_memory import SharedMemory
        a = SharedMemory(create=True, size=64)
        b = SharedMemory(create=True, size=64, track=False)
        print(a.name, b.name)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=60, check=True)
    tracked, untracked = out.stdout.split()
    assert not _exists(tracked)
    assert _exists(untracked)
    os.unlink("/dev/shm/" + untracked)
    assert out.stderr == ""  # no leaked-resource warnings


def _sl_child(name):
    sl = ShareableList(name=name)
    sl[0] = sl[0] * 2
    sl[2] = "changed"
    sl.shm.close()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_shareable_list(method):
    sl = ShareableList([21, 2.5, "text", b"raw", None, True])
    try:
        p = mp.get_context(method).Process(target=_sl_child, args=(sl.shm.name,))
        p.start()
        p.join(30)
        assert p.exitcode == 0
        assert list(sl) == [42, 2.5, "changed", b"raw", None, True]
        assert type(sl.shm) is SharedMemory and _exists(sl.shm.name)
    finally:
        sl.shm.close()
        sl.shm.unlink()


def test_reachable_under_the_dropin_import():
    assert shmlink.shared_memory.SharedMemory is SharedMemory
