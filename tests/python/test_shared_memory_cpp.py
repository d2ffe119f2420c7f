# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""shmlink.shared_memory.SharedMemory paired with C++'s shmlink::SharedMemory
(tests/python/cpp_shared_memory_peer.cc): either side creates, the other attaches by name,
both see the same bytes, and only an explicit unlink removes the name."""
import os
import subprocess
import sys
import textwrap

import pytest

from shmlink.shared_memory import SharedMemory
from conftest import reaped, runfile

SIZES = [1, 4096, 16 << 20]


def _pattern(seed, n):
    """Byte i is ((i % 251) * 7 + seed) & 0xff, as cpp_shared_memory_peer computes it."""
    unit = bytes(((j * 7 + seed) & 0xFF) for j in range(251))
    return (unit * (n // 251 + 1))[:n]


def _exists(shm_name):
    return os.path.exists("/dev/shm" + shm_name)


def _peer(*args, **kwargs):
    return subprocess.Popen([runfile("tests/python/cpp_shared_memory_peer")] + list(args),
                            text=True, **kwargs)


@pytest.mark.parametrize("size", SIZES)
def test_python_creates_cpp_attaches_and_writes(shm_name, size):
    # Python names leave off the leading '/' that the C++ (POSIX) name has.
    shm = SharedMemory(shm_name[1:], create=True, size=size)
    try:
        assert shm.name == shm_name[1:] and shm.size == size
        shm.buf[:] = _pattern(1, size)
        p = _peer("--attach", shm_name, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert out == "ok %d\n" % size
        assert bytes(shm.buf) == _pattern(2, size)
        assert _exists(shm_name)  # the C++ attacher's exit removed nothing
    finally:
        shm.close()
        shm.unlink()
    assert not _exists(shm_name)


@pytest.mark.parametrize("size", SIZES)
def test_cpp_creates_python_attaches_and_reads(shm_name, size):
    with reaped(_peer("--create", shm_name, str(size), stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE)) as p:
        assert p.stdout.readline() == "ready\n"
        shm = SharedMemory(shm_name[1:])
        try:
            assert shm.size == size
            assert bytes(shm.buf) == _pattern(3, size)
            shm.buf[0] = 0xA5  # shared, not a copy: a second attach sees it
        finally:
            shm.close()
        again = SharedMemory(shm_name[1:])
        assert again.buf[0] == 0xA5
        again.close()
        assert _exists(shm_name)
        out, _ = p.communicate("\n", timeout=60)
        assert p.returncode == 0 and out == "unlinked\n"
    assert not _exists(shm_name)


def test_python_attacher_exit_keeps_a_cpp_created_block(shm_name):
    size = 4096
    code = textwrap.dedent("""
        import sys
        from shmlink.shared_memory import SharedMemory
        shm = SharedMemory(sys.argv[1])
        assert shm.size == int(sys.argv[2])
        shm.buf[1] = 0x5A
        shm.close()
    """)  # exits without unlink(): the atexit hook must not remove what it only attached
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    with reaped(_peer("--create", shm_name, str(size), stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE)) as p:
        assert p.stdout.readline() == "ready\n"
        out = subprocess.run([sys.executable, "-c", code, shm_name[1:], str(size)],
                             capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stderr == ""  # no leaked-resource warnings either
        assert _exists(shm_name)
        shm = SharedMemory(shm_name[1:])
        assert shm.buf[1] == 0x5A
        shm.close()
        out, _ = p.communicate("\n", timeout=60)
        assert p.returncode == 0 and out == "unlinked\n"
    assert not _exists(shm_name)


def test_cpp_attach_errors_are_reported(shm_name):
    # Absent name, then a Python block whose bytes are not the expected pattern.
    p = _peer("--attach", shm_name, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1 and "attach" in err
    shm = SharedMemory(shm_name[1:], create=True, size=100)
    try:
        p = _peer("--attach", shm_name, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 3 and "mismatch" in err
    finally:
        shm.close()
        shm.unlink()
