# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""asyncio: recv_async on Pipe and Listener/Client connections and named Rings (add_reader
on fileno()), Queue.get_async, in an event loop that serves other sockets at the same time."""
import asyncio
import multiprocessing as mp
import os
import socket
import subprocess
import threading
import time

import pytest

import shmlink
from conftest import reaped, runfile
from shmlink.connection import Client, Listener


def _slow_sender(conn, n):
    for i in range(n):
        time.sleep(0.01)
        conn.send(("msg", i))
    conn.send_bytes(b"x" * (6 << 20))  # a large message, too
    conn.close()


async def _echo_sockets(n):
    """Another user of the loop: a socketpair ping-pong."""
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    for i in range(n):
        await loop.sock_sendall(a, b"%d" % i)
        assert await loop.sock_recv(b, 16) == b"%d" % i
        await asyncio.sleep(0.005)
    a.close()
    b.close()
    return n


def test_pipe_recv_async_next_to_other_sockets():
    a, b = shmlink.Pipe()
    p = mp.get_context("fork").Process(target=_slow_sender, args=(b, 20))
    p.start()
    b.close()

    async def main():
        other = asyncio.create_task(_echo_sockets(20))
        got = [await a.recv_async() for _ in range(20)]
        big = await a.recv_bytes_async()
        return got, len(big), await other

    got, big, echoed = asyncio.run(main())
    assert got == [("msg", i) for i in range(20)] and big == 6 << 20 and echoed == 20
    p.join(30)
    a.close()


def test_socket_connection_recv_async(unix_path):
    with Listener(unix_path, authkey=b"k") as listener:
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("c", Client(unix_path, authkey=b"k")))
        t.start()
        s = listener.accept(timeout=20)
        t.join(20)
        c = out["c"]

        def later():
            for i in range(5):
                time.sleep(0.02)
                c.send(i)

        sender = threading.Thread(target=later)
        sender.start()

        async def main():
            other = asyncio.create_task(_echo_sockets(5))
            got = [await s.recv_async() for _ in range(5)]
            return got, await other

        assert asyncio.run(main()) == ([0, 1, 2, 3, 4], 5)
        sender.join()
        c.close()
        s.close()


def test_queue_get_async_and_cancel_loses_nothing():
    q = shmlink.Queue()

    async def main():
        waiter = asyncio.create_task(q.get_async())
        await asyncio.sleep(0.05)
        waiter.cancel()  # cancelled while empty: takes nothing
        try:
            await waiter
        except asyncio.CancelledError:
            pass
        threading.Timer(0.05, q.put, ("late",)).start()
        other = asyncio.create_task(_echo_sockets(5))
        got = await q.get_async()
        q.put("next")
        return got, await q.get_async(), await other

    assert asyncio.run(main()) == ("late", "next", 5)
    assert q.empty()


def test_ring_recv_async(shm_name):
    ring = shmlink.Ring.create(shm_name, 1 << 16)
    peer = shmlink.Ring.attach(shm_name)
    threading.Timer(0.05, lambda: (peer.send_bytes(b"abc"), peer.send({"k": 1}))).start()

    async def main():
        other = asyncio.create_task(_echo_sockets(3))
        return await ring.recv_bytes_async(), await ring.recv_async(), await other

    assert asyncio.run(main()) == (b"abc", {"k": 1}, 3)
    peer.close()
    ring.close()


def _ring_sender(name, n, gap, then_close):
    ring = shmlink.Ring.attach(name)
    for i in range(n):
        time.sleep(gap)
        ring.send(("msg", i))
    if then_close:
        ring.close()
    else:
        time.sleep(60)  # holds the producer role until killed


def test_ring_fileno_with_add_reader_next_to_a_socket(shm_name):
    """A C++ producer process writes the ring; the loop waits on ring.fileno() with
    add_reader while it also serves a socketpair, and drains at each readiness."""
    n, size = 300, 256
    with shmlink.Ring.create(shm_name, 1 << 12) as ring:
        fd = ring.fileno()
        assert ring.fileno() == fd  # one descriptor per receiving side
        prod = runfile("examples/python/numpy_producer")
        with reaped(subprocess.Popen([prod, shm_name, str(n), "1", str(size), "bytes"])) as p:

            async def main():
                loop = asyncio.get_running_loop()
                done = loop.create_future()
                got = []

                def readable():
                    os.read(fd, 8)  # clear first, then drain
                    try:
                        while True:
                            got.append(ring.recv_bytes(timeout=0))
                    except TimeoutError:
                        pass
                    except EOFError:
                        if not done.done():
                            done.set_result(None)

                loop.add_reader(fd, readable)
                try:
                    other = asyncio.create_task(_echo_sockets(20))
                    await asyncio.wait_for(done, 30)
                    return got, await other
                finally:
                    loop.remove_reader(fd)

            got, echoed = asyncio.run(main())
            assert p.wait(timeout=20) == 0
        assert echoed == 20
        assert got == [bytes((i + k) % 251 for k in range(size)) for i in range(n)]


def test_ring_recv_async_waits_on_fileno_without_polling(shm_name):
    """recv_async sleeps in the event loop between messages: a handful of poll()s per
    message (the old implementation polled every 50 us .. 5 ms of a quiet spell)."""
    n, gap = 10, 0.05
    with shmlink.Ring.create(shm_name, 1 << 16) as ring:
        polls = [0]
        real_poll = ring.poll

        def counting_poll(timeout=0.0):
            polls[0] += 1
            return real_poll(timeout)

        ring.poll = counting_poll
        p = mp.get_context("fork").Process(target=_ring_sender, args=(shm_name, n, gap, True))
        p.start()
        try:
            async def main():
                other = asyncio.create_task(_echo_sockets(10))
                got = [await asyncio.wait_for(ring.recv_async(), 20) for _ in range(n)]
                with pytest.raises(EOFError):
                    await asyncio.wait_for(ring.recv_async(), 20)
                return got, await other

            got, echoed = asyncio.run(main())
        finally:
            p.join(20)
        assert p.exitcode == 0
        assert got == [("msg", i) for i in range(n)] and echoed == 10
        assert polls[0] <= 4 * (n + 1), polls[0]


def test_ring_recv_async_eof_when_the_writer_is_killed(shm_name):
    with shmlink.Ring.create(shm_name, 1 << 16) as ring:
        p = mp.get_context("fork").Process(target=_ring_sender, args=(shm_name, 1, 0, False))
        p.start()
        try:
            async def main():
                first = await asyncio.wait_for(ring.recv_async(), 20)
                p.kill()
                with pytest.raises(EOFError):
                    await asyncio.wait_for(ring.recv_bytes_async(), 20)
                return first

            assert asyncio.run(main()) == ("msg", 0)
        finally:
            p.kill()
            p.join(20)
