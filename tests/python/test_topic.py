# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""shmlink.Topic: publish/subscribe by name across processes, C++ and Python mixed."""
import json
import mmap
import multiprocessing
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

import shmlink
from conftest import reaped, runfile

QUOTE = np.dtype([("seq", "<u8"), ("ts_ns", "<i8"), ("bid", "<f8"), ("ask", "<f8"),
                  ("bid_size", "<u4"), ("ask_size", "<u4"), ("symbol", "S8")], align=True)


def test_every_subscriber_gets_every_message_decoded(shm_name):
    t = shmlink.Topic.create(shm_name, capacity=1 << 16)
    pub = t.publisher()
    subs = [t.subscriber() for _ in range(3)]
    values = [{"k": 1}, b"raw bytes", np.arange(4, dtype=np.int32), "text", 42]
    for v in values:
        pub.send(v)
    for s in subs:
        got = [s.recv(timeout=1) for _ in values]
        assert got[0] == {"k": 1} and got[1] == b"raw bytes" and got[3:] == ["text", 42]
        assert np.array_equal(got[2], np.arange(4, dtype=np.int32))
        with pytest.raises(TimeoutError):
            s.recv(timeout=0)
    assert t.subscriber_count == 3 and t.published == len(values)


def test_late_joiner_gets_history(shm_name):
    t = shmlink.Topic.create(shm_name, history=3)
    pub = t.publisher()
    for i in range(10):
        pub.send(i)
    late = t.subscriber()
    assert [late.recv(timeout=1) for _ in range(3)] == [7, 8, 9]
    assert late.next_sequence == 10


def test_recv_view_and_recv_array_are_zero_copy(shm_name):
    t = shmlink.Topic.create(shm_name)
    pub, sub = t.publisher(), t.subscriber()
    pub.send_array(np.arange(12.0).reshape(3, 4))
    a = sub.recv_array(timeout=1)
    assert a.shape == (3, 4) and a[2, 3] == 11.0 and not a.flags.writeable
    assert not a.flags.owndata  # a view into the shared mapping
    pub.send(b"hello")
    with sub.recv_view(timeout=1) as mv:
        assert bytes(mv) == b"hello"


def test_overwrite_counts_losses_and_reports_torn_reads(shm_name):
    t = shmlink.Topic.create(shm_name, capacity=4096, policy="overwrite")
    pub, sub = t.publisher(), t.subscriber()
    for i in range(1000):
        pub.send_bytes(struct.pack("<Q", i) * 4)
    first = struct.unpack_from("<Q", sub.recv_bytes(timeout=1))[0]
    assert sub.lost == first > 0  # everything before the oldest intact message
    msg = sub.recv_view(timeout=1)
    for i in range(1000, 2000):
        pub.send_bytes(struct.pack("<Q", i) * 4)
    with pytest.raises(shmlink.OverrunError) as e:
        msg.release()
    assert e.value.lost >= 1
    del e  # its traceback refers to this frame: a cycle that would keep the topic mapped


def test_typed_topic_checks_the_type(shm_name):
    t = shmlink.Topic.create(shm_name, type_name="feed::Quote", dtype=QUOTE)
    assert t.type_size == 48 and t.type_hash == shmlink.topic_type_hash("feed::Quote")
    with pytest.raises(TypeError):
        shmlink.Topic.attach(shm_name, type_name="feed::Trade")
    with pytest.raises(TypeError):
        shmlink.Topic.attach(shm_name, dtype=np.float64)
    pub = t.publisher()
    with pytest.raises(TypeError):
        pub.send_bytes(b"not 48 bytes")
    q = np.zeros(1, dtype=QUOTE)
    q["seq"] = 5
    pub.send(q)
    sub_t = shmlink.Topic.attach(shm_name, type_name="feed::Quote", dtype=QUOTE)
    sub = sub_t.subscriber()
    pub.send(q)
    assert sub.recv_array(dtype=QUOTE, timeout=1)["seq"][0] == 5


def test_corrupt_or_foreign_segment_is_an_error(shm_name):
    t = shmlink.Topic.create(shm_name, unlink_on_close=True)
    with open("/dev/shm" + shm_name, "r+b") as f:
        with mmap.mmap(f.fileno(), 0) as m:
            m[40] ^= 0xFF  # a geometry byte: the header checksum no longer matches
            with pytest.raises(ValueError):
                shmlink.Topic.attach(shm_name)
            m[40] ^= 0xFF
    shmlink.Topic.attach(shm_name)
    ring = shm_name + "-ring"
    r = shmlink.Ring.create(ring, 4096)
    with pytest.raises(ValueError):
        shmlink.Topic.attach(ring)
    r.close()
    del t


def test_closed_stream_and_iteration(shm_name):
    t = shmlink.Topic.create(shm_name)
    pub, sub = t.publisher(), t.subscriber()
    for i in range(5):
        pub.send(i)
    pub.close()
    assert list(sub) == [0, 1, 2, 3, 4]


def test_fileno_signals_new_messages(shm_name):
    import select
    t = shmlink.Topic.create(shm_name)
    pub, sub = t.publisher(), t.subscriber()
    fd = sub.fileno()
    os.read(fd, 8)  # the initial "maybe pending"
    assert select.select([fd], [], [], 0.05)[0] == []
    pub.send("ping")
    assert select.select([fd], [], [], 5)[0] == [fd]
    os.read(fd, 8)
    assert sub.recv(timeout=0) == "ping"


def _py_subscriber(name, n, q):
    sub = shmlink.Topic.attach(name).subscriber()
    q.put("joined")
    got = [sub.recv(timeout=20) for _ in range(n)]
    q.put(got)


def test_python_processes_by_name_and_a_killed_publisher(shm_name):
    t = shmlink.Topic.create(shm_name)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    kids = [ctx.Process(target=_py_subscriber, args=(shm_name, 50, q)) for _ in range(2)]
    for k in kids:
        k.start()
    assert [q.get(timeout=20) for _ in kids] == ["joined", "joined"]

    def publish_then_hang():
        pub = shmlink.Topic.attach(shm_name).publisher()
        for i in range(50):
            pub.send({"i": i})
        time.sleep(60)

    p = ctx.Process(target=publish_then_hang)
    p.start()
    for _ in kids:
        assert q.get(timeout=20) == [{"i": i} for i in range(50)]
    for k in kids:
        k.join(10)
    sub = t.subscriber()  # joins after the 50 (no history): waits for more
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    with pytest.raises(EOFError):  # the publisher died: kPeerDead
        sub.recv(timeout=20)
    pub = t.publisher()  # a successor takes the role over and continues the sequence
    assert pub.next_sequence == 50
    pub.send("after")
    assert sub.recv(timeout=5) == "after"


def test_cpp_publisher_feeds_two_cpp_and_two_numpy_subscribers(shm_name):
    count = 5000
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    publisher = subprocess.Popen(
        [runfile("examples/pubsub/quote_publisher"), "--topic", shm_name, "--rate", "20000",
         "--count", str(count), "--history", "0", "--wait-subscribers", "4"],
        stdout=subprocess.PIPE, text=True)
    with reaped(publisher):
        subs = [subprocess.Popen([runfile("examples/pubsub/quote_subscriber"), "--topic",
                                  shm_name], stdout=subprocess.PIPE, text=True)
                for _ in range(2)]
        subs += [subprocess.Popen([sys.executable, runfile("examples/pubsub/quote_summary.py"),
                                   "--topic", shm_name, "--json"],
                                  stdout=subprocess.PIPE, text=True, env=env)
                 for _ in range(2)]
        results = []
        for s in subs:
            with reaped(s):
                out, _ = s.communicate(timeout=60)
                assert s.returncode == 0
                results.append(json.loads(out))
        out, _ = publisher.communicate(timeout=60)
        assert publisher.returncode == 0, out
    assert sorted(r["subscriber"] for r in results) == ["c++", "c++", "python", "python"]
    for r in results:
        assert (r["count"], r["first"], r["gaps"], r["lost"]) == (count, 0, 0, 0), r
    # All four saw the same prices.
    assert len({round(r["mean_mid"], 6) for r in results}) == 1
