# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""shmlink.Value/Array/RawValue/RawArray as multiprocessing.sharedctypes: lock= honoured,
raw ctypes objects in shared memory (buffer protocol, NumPy), c_bool/c_wchar/Structures,
under fork and spawn, attachable by name from another program."""
import ctypes
import gc
import multiprocessing as mp
import os
import pickle
import subprocess
import sys
import textwrap

import pytest

import shmlink
from shmlink import sharedctypes


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_int32), ("ok", ctypes.c_bool)]


def _in_shm(addr):
    """The mapping holding `addr` is a /dev/shm file."""
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= addr < hi:
                return len(parts) > 5 and parts[5].startswith("/dev/shm/")
    return False


@pytest.mark.parametrize("make", [mp.Lock, mp.RLock])
def test_passed_lock_is_used_and_returned(make):
    lock = make()
    v = shmlink.Value("i", 5, lock=lock)
    a = shmlink.Array("d", 3, lock=lock)
    assert v.get_lock() is lock and a.get_lock() is lock
    with v:
        assert not lock.acquire(False) or make is mp.RLock
    v.value += 1
    assert v.value == 6 and v.get_obj().value == 6


def test_lock_false_gives_the_raw_object_and_bad_lock_fails():
    v = shmlink.Value(ctypes.c_long, 7, lock=False)
    assert type(v) is ctypes.c_long and v.value == 7
    assert not hasattr(v, "get_lock")
    a = shmlink.Array("i", [1, 2], lock=False)
    assert isinstance(a, ctypes.Array) and a[:] == [1, 2]
    with pytest.raises(AttributeError):  # as multiprocessing
        shmlink.Value("i", 0, lock=object())


def test_raw_objects_are_ctypes_in_shared_memory_numpy_sees_them():
    np = pytest.importorskip("numpy")
    r = shmlink.RawArray("d", 8)
    assert isinstance(r, ctypes.Array) and _in_shm(ctypes.addressof(r))
    view = np.frombuffer(r, dtype=np.float64)
    view[:] = np.arange(8)
    assert r[:] == [float(i) for i in range(8)]
    rv = shmlink.RawValue("q", 3)
    assert isinstance(rv, ctypes.c_longlong) and _in_shm(ctypes.addressof(rv))
    assert memoryview(rv).nbytes == 8
    s = shmlink.Array("d", 4)
    np.frombuffer(s.get_obj())[:] = 2.0
    assert s[:] == [2.0] * 4


def test_bool_wchar_structures_and_typecodes():
    b = shmlink.Value(ctypes.c_bool, True)
    assert b.value is True
    w = shmlink.Array("u", "héllo")
    assert w[:] == "héllo" and w.get_obj().value == "héllo"
    c = shmlink.Array("c", b"bytes")
    assert c.value == b"bytes" and c.raw == b"bytes"
    pts = shmlink.Array(Point, [(1.5, 2, True), (3.0, 4, False)])
    assert pts[1].x == 3.0 and pts[0].ok is True
    pts[1].y = 40
    assert pts.get_obj()[1].y == 40
    p = shmlink.Value(Point, 1.0, 2, True)
    assert p.x == 1.0 and p.y == 2
    for code in sharedctypes.typecode_to_type:
        assert len(shmlink.RawArray(code, 2)) == 2


def _child_work(v, a, pts, raw, lock):
    for _ in range(100):
        with v.get_lock():
            v.value += 1
    with lock:  # a's own lock: its item access would take it again (not recursive)
        a.get_obj()[0] += 1
    pts[0].x += 1.0
    pts[1].ok = True
    raw[0] = b"Z"


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_shared_with_children(method):
    ctx = mp.get_context(method)
    lock = ctx.Lock()
    v = shmlink.Value("i", 0)
    a = shmlink.Array("i", 2, lock=lock)
    pts = shmlink.RawArray(Point, 2)
    raw = shmlink.RawArray("c", 3)
    ps = [ctx.Process(target=_child_work, args=(v, a, pts, raw, lock)) for _ in range(3)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    assert v.value == 300 and a[0] == 3
    assert pts[0].x == 3.0 and pts[1].ok is True and raw[0] == b"Z"


def test_pickling_outside_process_start_raises_like_stdlib():
    for obj in (shmlink.Value("i", 1), shmlink.RawArray("i", 2)):
        with pytest.raises(RuntimeError):
            mp.reduction.ForkingPickler.dumps(obj)
    with pytest.raises(Exception):
        pickle.dumps(shmlink.Value("i", 1))


def test_attach_by_name_from_another_program_and_owner_removes_it():
    v = shmlink.Value("d", 0.0)
    name = sharedctypes.segment_name(v)
    code = textwrap.dedent("""
        import sys
        from shmlink import sharedctypes
        v = sharedctypes.attach(sys.argv[1], "d")
        with v.get_lock():
            v.value = 2.5
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    subprocess.run([sys.executable, "-c", code, name], check=True, env=env, timeout=60)
    assert v.value == 2.5
    assert os.path.exists("/dev/shm" + name)  # the attacher's exit removed nothing
    del v
    gc.collect()
    assert not os.path.exists("/dev/shm" + name)  # the owner's object is gone: removed
