# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""asyncio: recv_async on Pipe and Listener/Client connections (add_reader on fileno()),
Queue.get_async, in an event loop that serves other sockets at the same time."""
import asyncio
import multiprocessing as mp
import socket
import threading
import time

import shmlink
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
