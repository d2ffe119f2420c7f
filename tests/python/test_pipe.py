# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""shmlink.Pipe: multiprocessing.Pipe's API over shared memory, across fork and spawn."""
import gc
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import pickle
import selectors
import signal
import threading
import time

import pytest

import shmlink
from conftest import interrupted


def test_duplex_objects_and_bytes():
    a, b = shmlink.Pipe()
    with a, b:
        a.send(["hello", 2.5, None, int, sum])
        assert b.recv() == ["hello", 2.5, None, int, sum]
        b.send_bytes(b"0123456789", 3, 4)
        assert a.recv_bytes() == b"3456"
        b.send_bytes(memoryview(bytearray(b"xy")))
        buf = bytearray(5)
        assert a.recv_bytes_into(buf, 1) == 2 and buf == b"\0xy\0\0"


def test_simplex_ends_are_one_way():
    r, w = shmlink.Pipe(duplex=False)
    with r, w:
        assert r.readable and not r.writable and w.writable and not w.readable
        w.send(1)
        assert r.recv() == 1
        with pytest.raises(OSError):
            r.send(1)
        with pytest.raises(OSError):
            w.recv()


def test_poll_timeout_and_closed_handle():
    a, b = shmlink.Pipe()
    assert not b.poll()
    t0 = time.monotonic()
    assert not b.poll(0.05)
    assert time.monotonic() - t0 < 5
    a.send(1)
    assert b.poll(None)
    assert b.recv() == 1
    b.close()
    assert b.closed
    with pytest.raises(OSError):
        b.recv()
    a.close()


def test_recv_bytes_maxlength_and_buffer_too_short():
    a, b = shmlink.Pipe()
    with a, b:
        a.send_bytes(b"x" * 100)
        with pytest.raises(OSError):
            b.recv_bytes(10)
        a.send_bytes(b"y" * 100)
        with pytest.raises(shmlink.BufferTooShort) as e:
            b.recv_bytes_into(bytearray(10))
        assert e.value.args[0] == b"y" * 100


def test_recv_of_a_bad_pickle_raises_the_unpickling_error():
    # recv() decodes in place; the decoder's own exception must come out (not a SystemError
    # from releasing the view with it pending), and the message must still be freed.
    a, b = shmlink.Pipe()
    with a, b:
        a.send_bytes(b"not a pickle")
        a.send("next")
        with pytest.raises(pickle.UnpicklingError):
            b.recv()
        assert b.recv() == "next"


def test_close_gives_eof_after_drain_and_broken_pipe_to_sender():
    a, b = shmlink.Pipe()
    a.send("last")
    a.close()
    assert b.recv() == "last"
    with pytest.raises(EOFError):
        b.recv()
    c, d = shmlink.Pipe(capacity=4096)
    c.send(1)
    d.close()  # d never read: its hang-up tells c once c has to wait for space
    with pytest.raises(BrokenPipeError):
        for _ in range(1000):
            c.send_bytes(b"x" * 100)
    e, f = shmlink.Pipe()
    e.send(1)
    assert f.recv() == 1  # f claimed the reading role: its close() is seen at once
    f.close()
    with pytest.raises(BrokenPipeError):
        e.send(2)
    e.close()
    b.close()
    c.close()


def test_large_messages():
    a, b = shmlink.Pipe()
    with a, b:
        big = os.urandom(1 << 20)
        t = threading.Thread(target=lambda: [a.send_bytes(big) for _ in range(20)])
        t.start()
        for _ in range(20):
            assert b.recv_bytes() == big
        t.join()
        # Past the inline maximum: a one-shot memfd, in order with the inline messages.
        for n in (a.max_message_size, a.max_message_size + 1, 5 << 20):
            a.send_bytes(bytes([n % 251]) * n)
            a.send_bytes(b"after")
            assert b.recv_bytes() == bytes([n % 251]) * n
            assert b.recv_bytes() == b"after"


def _open_fds():
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink("/proc/self/fd/" + fd))
        except OSError:
            pass
    return sorted(out)


def test_messages_of_64_mib_every_receive_form():
    np = pytest.importorskip("numpy")
    fds = _open_fds()
    a, b = shmlink.Pipe()
    with a, b:
        big = os.urandom(64 << 20)
        arr = np.arange(4 << 20, dtype=np.float64)  # 32 MiB
        out = bytearray(len(big))

        def send():
            a.send_bytes(big)
            a.send({"blob": big})
            a.send_bytes(big)
            a.send_bytes(big)
            a.send_bytes(big)
            a.send_array(arr)
            a.send_bytes(b"x" * 10)

        t = threading.Thread(target=send)
        t.start()
        assert b.recv_bytes() == big
        assert b.recv() == {"blob": big}
        assert b.recv_bytes_into(out) == len(big) and out == big
        try:
            b.recv_bytes_into(bytearray(10))
            raise AssertionError("no BufferTooShort")
        except mp.BufferTooShort as e:
            assert e.args[0] == big
        msg = b.recv_view()  # no copy: a mapping of the message's own segment
        lo, size = b._ch.mapping
        assert not lo <= msg.address < lo + size
        with msg as mv:
            assert mv.readonly and mv.nbytes == len(big) and mv[:16] == big[:16]
        got = b.recv_array()
        assert got.shape == arr.shape and (got == arr).all() and not got.flags.writeable
        del got
        with pytest.raises(OSError):
            b.recv_bytes(maxlength=5)  # as multiprocessing: "bad message length"
        t.join()
    del a, b, t, msg
    gc.collect()  # the closed ends' segment mapping goes with their objects
    assert _open_fds() == fds  # every memfd (and socket) was closed on both sides


def _send_big_to_parent(conn, n):
    conn.send_bytes(bytes([7]) * n)
    conn.send("done")
    conn.close()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_large_message_from_a_child(method):
    ctx = mp.get_context(method)
    a, b = shmlink.Pipe()
    p = ctx.Process(target=_send_big_to_parent, args=(b, 16 << 20))
    p.start()
    b.close()
    assert a.recv_bytes() == bytes([7]) * (16 << 20)
    assert a.recv() == "done"
    p.join(30)
    assert p.exitcode == 0
    a.close()


def test_wait_and_selectors_see_readiness():
    a, b = shmlink.Pipe()
    with a, b:
        assert mpc.wait([b], 0.05) == []
        a.send(1)
        assert mpc.wait([b], 5) == [b]
        assert b.recv() == 1
        assert mpc.wait([b], 0.05) == []  # drained: not readable any more
        sel = selectors.DefaultSelector()
        sel.register(b, selectors.EVENT_READ)
        assert sel.select(0.05) == []
        a.send_bytes(b"x")
        assert [k.fileobj for k, _ in sel.select(5)] == [b]
        assert b.recv_bytes() == b"x"
        for i in range(100):  # bursts: readiness tracks the ring, not message counts
            a.send(i)
        got = []
        while mpc.wait([b], 0.2):
            got.append(b.recv())
        assert got == list(range(100))
        a.close()
        assert mpc.wait([b], 5) == [b]  # end of stream is readable
        sel.close()


def _echo(conn, n):
    for _ in range(n):
        conn.send(conn.recv())
    conn.close()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_child_process_echo(method):
    ctx = mp.get_context(method)
    parent, child = shmlink.Pipe()
    p = ctx.Process(target=_echo, args=(child, 50))
    p.start()
    child.close()
    try:
        for i in range(50):
            parent.send({"i": i, "pad": b"z" * i})
            assert parent.recv() == {"i": i, "pad": b"z" * i}
        with pytest.raises(EOFError):
            parent.recv()
    finally:
        p.join(30)
        parent.close()
    assert p.exitcode == 0


def _send_then_exit(conn):
    conn.send("bye")
    # exits without close(): the reader must still see EOF, not hang


def _send_then_sleep(conn):
    conn.send("hi")
    time.sleep(60)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_peer_exit_without_close_gives_eof(method):
    ctx = mp.get_context(method)
    r, w = shmlink.Pipe(duplex=False)
    p = ctx.Process(target=_send_then_exit, args=(w,))
    p.start()
    w.close()
    try:
        assert r.recv() == "bye"
        t0 = time.monotonic()
        with pytest.raises(EOFError):
            r.recv()
        assert time.monotonic() - t0 < 5
    finally:
        p.join(30)
        r.close()


def test_killed_peer_gives_eof_not_hang():
    r, w = shmlink.Pipe(duplex=False)
    p = mp.get_context("fork").Process(target=_send_then_sleep, args=(w,))
    p.start()
    try:
        assert r.recv() == "hi"
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        t0 = time.monotonic()
        with pytest.raises(EOFError):
            r.recv()  # the parent still holds its copy of w: role liveness detects it
        assert time.monotonic() - t0 < 5
    finally:
        if p.is_alive():
            p.kill()
        p.join()
        r.close()
        w.close()


def test_sigint_interrupts_blocked_recv():
    a, b = shmlink.Pipe()
    with a, b:
        with interrupted():
            b.recv()


def _pass_on(q, conn, done):
    q.put(conn)  # a Connection pickled through a queue (resource sharer)
    done.wait(30)  # the sharing process must live until the receiver took the fds


def test_connection_through_a_queue():
    ctx = mp.get_context("fork")
    a, b = shmlink.Pipe()
    q = ctx.Queue()
    done = ctx.Event()
    p = ctx.Process(target=_pass_on, args=(q, b, done))
    p.start()
    b2 = q.get(timeout=30)
    done.set()
    p.join(30)
    a.send("through a queue")
    assert b2.recv() == "through a queue"
    for c in (a, b, b2):
        c.close()


def test_fileno_first_called_with_a_message_already_waiting():
    a, b = shmlink.Pipe()
    with a, b:
        a.send("early")  # sent before anyone asked for b's fileno (doorbell still off)
        assert mpc.wait([b], 5) == [b]
        assert b.recv() == "early"
        assert mpc.wait([b], 0.05) == []
        a.send("late")
        assert mpc.wait([b], 5) == [b]
        assert b.recv() == "late"


# -- file descriptors ------------------------------------------------------------------------
def _read_passed_fd(conn):
    fd = shmlink.reduction.recv_handle(conn)
    with os.fdopen(fd, "rb") as f:
        conn.send(("child", conn.recv(), f.read()))
    conn.close()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_send_handle_in_order_with_messages(tmp_path, method):
    path = tmp_path / "data"
    path.write_bytes(b"through the fd")
    a, b = shmlink.Pipe()
    p = mp.get_context(method).Process(target=_read_passed_fd, args=(b,))
    p.start()
    b.close()
    with open(path, "rb") as f:
        shmlink.reduction.send_handle(a, f.fileno(), p.pid)
    a.send("after the fd")
    assert a.recv() == ("child", "after the fd", b"through the fd")
    p.join(30)
    assert p.exitcode == 0
    a.close()


def test_recv_handle_on_a_message_and_stdlib_connections():
    a, b = shmlink.Pipe()
    with a, b:
        r, w = os.pipe()
        a.send_handle(w)
        os.close(w)
        fd = b.recv_handle()
        os.write(fd, b"x")
        os.close(fd)
        assert os.read(r, 1) == b"x"
        os.close(r)
        a.send("not a handle")
        with pytest.raises(RuntimeError):  # as multiprocessing's recvfds on other data
            b.recv_handle()
        a.send_handle(0)
        with pytest.raises(RuntimeError):
            b.recv()
    # stdlib connections still go through the stdlib functions.
    c, d = mp.Pipe()
    with c, d:
        shmlink.reduction.send_handle(c, 0, os.getpid())
        fd = shmlink.reduction.recv_handle(d)
        assert os.path.sameopenfile(fd, 0)
        os.close(fd)


def test_large_segment_is_reused_only_after_the_receiver_gave_it_back():
    a, b = shmlink.Pipe()
    with a, b:
        n = a.max_message_size + 1000

        def inodes():
            return [os.fstat(fd).st_ino for fd, _, _ in a._large_pool]

        a.send_bytes(b"1" * n)
        held = b.recv_view()  # still in use: the next send needs another segment
        a.send_bytes(b"2" * n)
        assert len(set(inodes())) == 2
        assert held.tobytes()[:1] == b"1"  # untouched by the second send
        held.release()
        assert b.recv_bytes() == b"2" * n  # copied, then given back at once
        before = inodes()
        for k in range(5):  # both free again: reused, no new segment
            a.send_bytes(bytes([k]) * n)
            with b.recv_view() as mv:
                assert mv[:1] == bytes([k]) and mv.nbytes == n
        assert inodes() == before
