# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""Bad input gives the exception types multiprocessing gives: each case runs against the
stdlib and against shmlink (imported as it) and the two exception types must be equal."""
import multiprocessing
import os
import queue
import threading

import pytest

import shmlink

MODULES = {"stdlib": multiprocessing, "shmlink": shmlink}


def _raised(fn):
    try:
        fn()
    except BaseException as e:  # noqa: B902 (the type is what is compared)
        return type(e)
    return None


def _same(case, *args):
    got = {k: _raised(lambda: case(m, *args)) for k, m in MODULES.items()}
    assert got["stdlib"] is not None, "the stdlib raised nothing"
    assert got["shmlink"] is got["stdlib"], got


def _unpicklable(mp):
    a, b = mp.Pipe()
    with a, b:
        a.send(lambda: None)


def _recv_from_closed_peer(mp):
    a, b = mp.Pipe()
    a.close()
    with b:
        b.recv()


def _send_to_closed_peer(mp):
    a, b = mp.Pipe()
    b.close()
    with a:
        a.send_bytes(b"x" * 100000)


def _use_closed_handle(mp):
    a, b = mp.Pipe()
    a.close()
    b.close()
    a.send(1)


def _oversize_for_maxlength(mp):
    a, b = mp.Pipe()
    with a, b:
        a.send_bytes(b"x" * 100)
        b.recv_bytes(maxlength=10)


def _buffer_too_short(mp):
    a, b = mp.Pipe()
    with a, b:
        a.send_bytes(b"x" * 100)
        b.recv_bytes_into(bytearray(10))


def _simplequeue_unpicklable(mp):
    mp.SimpleQueue().put(lambda: None)


def _get_from_empty(mp):
    mp.Queue().get(timeout=0.05)


def _put_to_full(mp):
    q = mp.Queue(1)
    q.put(1)
    q.put(2, timeout=0.05)


def _get_from_closed(mp):
    q = mp.Queue()
    q.close()
    q.get()


def _bad_typecode(mp):
    mp.Value("z", 1)


def _bad_lock(mp):
    mp.Value("i", 1, lock=object())


def _array_index(mp):
    mp.Array("i", 3)[5]


def _wrong_key(mp, path):
    listener = mp.connection.Listener(path, authkey=b"right")
    try:
        t = threading.Thread(target=lambda: _raised(
            lambda: mp.connection.Client(path, authkey=b"wrong")))
        t.start()
        try:
            listener.accept()
        finally:
            t.join(20)
    finally:
        listener.close()


def _missing_address(mp, path):
    mp.connection.Client(path + ".missing", authkey=b"k")


def _missing_address_no_key(mp, path):
    mp.connection.Client(path + ".missing")


CASES = [_unpicklable, _recv_from_closed_peer, _send_to_closed_peer, _use_closed_handle,
         _oversize_for_maxlength, _buffer_too_short, _simplequeue_unpicklable, _get_from_empty,
         _put_to_full, _get_from_closed, _bad_typecode, _bad_lock, _array_index]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__.strip("_") for c in CASES])
def test_same_exception_type(case):
    _same(case)


@pytest.mark.parametrize("case", [_wrong_key, _missing_address, _missing_address_no_key],
                         ids=["wrong_key", "missing_address", "missing_address_no_key"])
def test_same_exception_type_on_sockets(case, unix_path):
    _same(case, unix_path)
    if os.path.exists(unix_path):
        os.unlink(unix_path)


def test_queue_exceptions_are_the_queue_modules():
    assert _raised(lambda: shmlink.Queue().get_nowait()) is queue.Empty
