# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""shmlink.Queue / JoinableQueue / SimpleQueue / Value / Array, as multiprocessing's."""
import gc
import multiprocessing as mp
import os
import queue
import signal
import threading
import time

import pytest

import shmlink
from shmlink import _names as shm_names


def _names(prefix):
    return [f for f in os.listdir("/dev/shm") if f.startswith(prefix)]


@pytest.fixture
def no_leftovers():
    before = set(os.listdir("/dev/shm"))
    yield
    gc.collect()
    # Only names of the kinds this file makes (queues, values, arrays): other test targets
    # run in parallel, share /dev/shm, and (in PID namespaces) even our pid.
    kinds = tuple(shm_names.prefix(k) for k in ("q", "jq", "sq", "v", "a"))
    left = [f for f in set(os.listdir("/dev/shm")) - before if f.startswith(kinds)]
    for f in left:
        os.unlink("/dev/shm/" + f)
    assert not left, "left behind: %s" % left


# -- single process semantics ------------------------------------------------------------
def test_put_get_fifo_objects_and_bytes(no_leftovers):
    q = shmlink.Queue()
    items = [1, "two", b"three", None, {"four": [4]}, b"", bytearray(b"ba")]
    for it in items:
        q.put(it)
    assert q.qsize() == len(items)
    assert [q.get() for _ in items] == items
    assert q.empty()


def test_maxsize_full_empty_and_timeouts(no_leftovers):
    q = shmlink.Queue(2)
    assert q.empty() and not q.full()
    q.put(1)
    q.put_nowait(2)
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    t0 = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.05)
    assert time.monotonic() - t0 < 5
    assert q.get() == 1 and q.get_nowait() == 2
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    with pytest.raises(queue.Empty):
        q.get(block=False)
    with pytest.raises(ValueError):
        q.get(timeout=-1)


def test_blocked_put_resumes_when_a_get_makes_room(no_leftovers):
    q = shmlink.Queue(1)
    q.put("a")
    t = threading.Timer(0.1, q.get)
    t.start()
    q.put("b", timeout=10)
    t.join()
    assert q.get() == "b"


def test_closed_queue_raises_value_error(no_leftovers):
    q = shmlink.Queue()
    q.close()
    with pytest.raises(ValueError):
        q.put(1)
    with pytest.raises(ValueError):
        q.get()
    q.join_thread()
    q.cancel_join_thread()


def test_big_objects_spill_and_are_cleaned(no_leftovers):
    q = shmlink.Queue(slot_size=1024)
    big = os.urandom(300000)
    q.put(big)
    q.put({"big": big})
    assert q.get() == big
    assert q.get() == {"big": big}
    q.put(big)  # never got: removed with the queue
    name = q.name
    del q
    gc.collect()
    assert not _names(name[1:])


def test_creator_owns_names(no_leftovers):
    q = shmlink.Queue()
    name = q.name
    other = shmlink.Queue.attach(name)
    other.put(1)
    del other
    gc.collect()
    assert os.path.exists("/dev/shm" + name)  # an attacher never unlinks
    assert q.get() == 1
    q.unlink()
    assert not _names(name[1:])


def test_joinable_queue_task_done_and_join(no_leftovers):
    q = shmlink.JoinableQueue()
    for i in range(3):
        q.put(i)
    with pytest.raises(TimeoutError):
        q.join(timeout=0.05)
    for _ in range(3):
        q.get()
        q.task_done()
    q.join(timeout=5)
    with pytest.raises(ValueError):
        q.task_done()


def test_simple_queue(no_leftovers):
    q = shmlink.SimpleQueue()
    assert q.empty()
    q.put([1, 2])
    assert not q.empty()
    assert q.get() == [1, 2]
    q.close()


def test_sigint_interrupts_blocked_get(no_leftovers):
    q = shmlink.Queue()
    sent = []
    t = threading.Timer(0.2, lambda: (sent.append(time.monotonic()),
                                      os.kill(os.getpid(), signal.SIGINT)))
    t.start()
    with pytest.raises(KeyboardInterrupt):
        q.get()
    t.join()
    latency = time.monotonic() - sent[0]
    print("SIGINT -> KeyboardInterrupt in Queue.get: %.1f ms" % (latency * 1e3))
    assert latency < 2.0  # designed bound 100 ms; generous for a loaded machine


# -- processes -----------------------------------------------------------------------------
N_ITEMS = 500


def _producer(q, pid):
    for i in range(N_ITEMS):
        q.put((pid, i))


def _consumer(q, results):
    got = []
    while True:
        item = q.get(timeout=60)
        if item is None:
            break
        got.append(item)
    results.put(got)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_four_producers_four_consumers_every_item_once(method, no_leftovers):
    ctx = mp.get_context(method)
    q = shmlink.Queue(64)
    results = shmlink.Queue(slot_size=1 << 16)
    prods = [ctx.Process(target=_producer, args=(q, p)) for p in range(4)]
    cons = [ctx.Process(target=_consumer, args=(q, results)) for _ in range(4)]
    for p in prods + cons:
        p.start()
    for p in prods:
        p.join(120)
        assert p.exitcode == 0
    for _ in cons:
        q.put(None)
    got = []
    for _ in cons:
        got.extend(results.get(timeout=120))
    for c in cons:
        c.join(60)
        assert c.exitcode == 0
    assert sorted(got) == sorted((p, i) for p in range(4) for i in range(N_ITEMS))
    # per-producer order is kept
    for p in range(4):
        seq = [i for (pp, i) in got if pp == p]
        assert len(seq) == N_ITEMS


def _worker(jq):
    while True:
        item = jq.get()
        if item is None:
            jq.task_done()
            return
        jq.task_done()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_joinable_queue_across_processes(method, no_leftovers):
    ctx = mp.get_context(method)
    jq = shmlink.JoinableQueue()
    ws = [ctx.Process(target=_worker, args=(jq,)) for _ in range(2)]
    for w in ws:
        w.start()
    for i in range(100):
        jq.put(i)
    for _ in ws:
        jq.put(None)
    jq.join(timeout=60)
    for w in ws:
        w.join(60)
        assert w.exitcode == 0


def _get_then_die(q, started):
    started.set()
    q.get()


def test_killed_consumer_does_not_break_the_queue(no_leftovers):
    ctx = mp.get_context("fork")
    q = shmlink.Queue()
    ev = ctx.Event()
    p = ctx.Process(target=_get_then_die, args=(q, ev))
    p.start()
    ev.wait(10)
    time.sleep(0.1)
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    q.put("still works")
    assert q.get(timeout=5) == "still works"


# -- Value / Array -------------------------------------------------------------------------
def _add(v, a, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1
    with a.get_lock():
        for i in range(len(a)):
            a[i] = a[i] * 2


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_value_array_with_lock_across_processes(method, no_leftovers):
    ctx = mp.get_context(method)
    v = shmlink.Value("i", 0)
    a = shmlink.Array("d", [1.0, 2.0, 3.0])
    ps = [ctx.Process(target=_add, args=(v, a, 200)) for _ in range(3)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    assert v.value == 600
    assert a[:] == [8.0, 16.0, 24.0]


def test_value_array_api(no_leftovers):
    v = shmlink.Value("d", 1.5)
    assert v.value == 1.5
    v.value = 2.5
    assert v.get_obj().value == 2.5
    c = shmlink.Array("c", b"hello")
    assert c.value == b"hello" and c.raw == b"hello"
    a = shmlink.Array("i", 4)
    a[1:3] = [7, 8]
    assert list(a) == [0, 7, 8, 0] and len(a) == 4
    lock = a.get_lock()
    assert lock.acquire(timeout=1)
    assert lock.acquire(False)  # recursive, like multiprocessing's RLock
    lock.release()
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()
    with pytest.raises(TypeError):  # as multiprocessing
        shmlink.Value("z", 1)


def _hold_lock_and_die(v, ev):
    v.get_lock().acquire()
    ev.set()
    time.sleep(60)


def test_lock_of_a_killed_holder_is_recovered(no_leftovers):
    ctx = mp.get_context("fork")
    v = shmlink.Value("i", 0)
    ev = ctx.Event()
    p = ctx.Process(target=_hold_lock_and_die, args=(v, ev))
    p.start()
    assert ev.wait(10)
    assert not v.get_lock().acquire(timeout=0.1)
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    assert v.get_lock().acquire(timeout=5)
    assert v.get_lock().owner_died
    v.get_lock().release()
    v.value = 3
    assert v.value == 3


# -- unbounded: never blocks a put -----------------------------------------------------------
def test_unbounded_queue_takes_3000_puts_before_any_get(no_leftovers):
    q = shmlink.Queue(slots=64)  # few slots: most items wait in the feeder's buffer
    items = [{"i": i, "pad": "x" * (i % 50)} for i in range(3000)]
    t0 = time.monotonic()
    for it in items:
        q.put(it)
    q.put_nowait(b"last")  # never raises Full on an unbounded queue
    assert time.monotonic() - t0 < 30
    assert q.qsize() >= 3000
    assert [q.get(timeout=10) for _ in items] == items  # FIFO across slots and buffer
    assert q.get(timeout=10) == b"last"
    assert q.empty()
    q.close()
    q.join_thread()


def _drain(q, n, out):
    out.put(sum(q.get(timeout=30)["i"] for _ in range(n)))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_unbounded_producer_then_consumer_process(method, no_leftovers):
    ctx = mp.get_context(method)
    q, out = shmlink.Queue(), shmlink.Queue()
    for i in range(3000):  # more than the 1024 default slots, before anyone reads
        q.put({"i": i})
    p = ctx.Process(target=_drain, args=(q, 3000, out))
    p.start()
    assert out.get(timeout=60) == sum(range(3000))
    p.join(30)
    assert p.exitcode == 0
    q.close()
    q.join_thread()


def _put_many_and_exit(q, n):
    for i in range(n):
        q.put(i)
    # exits with most items in the feeder's buffer: the exit flushes them (join_thread)


def test_child_exit_flushes_its_buffer(no_leftovers):
    q = shmlink.Queue(slots=16)
    p = mp.get_context("fork").Process(target=_put_many_and_exit, args=(q, 500))
    p.start()
    got = [q.get(timeout=30) for _ in range(500)]
    p.join(30)
    assert p.exitcode == 0 and got == list(range(500))


def test_unbounded_joinable_counts_buffered_items(no_leftovers):
    q = shmlink.JoinableQueue(slots=8)
    for i in range(100):
        q.put(i)
    with pytest.raises(TimeoutError):
        q.join(timeout=0.1)  # buffered items are unfinished too
    for _ in range(100):
        q.get(timeout=10)
        q.task_done()
    q.join(timeout=10)


def test_big_items_overflow_in_order(no_leftovers):
    q = shmlink.Queue(slots=4, slot_size=256)
    items = [bytes([i]) * (1000 if i % 2 else 10) for i in range(40)]  # odd ones spill
    for it in items:
        q.put(it)
    assert [q.get(timeout=10) for _ in items] == items


def test_64_mib_items(no_leftovers):
    q = shmlink.Queue()
    big = os.urandom(64 << 20)
    q.put(big)
    q.put({"blob": big})
    assert q.get(timeout=30) == big
    assert q.get(timeout=30) == {"blob": big}


def test_feeder_error_hook_is_called(no_leftovers):
    seen = []

    class HookedQueue(shmlink.Queue):
        @staticmethod
        def _on_queue_feeder_error(e, obj):
            seen.append(type(e))

    q = HookedQueue(slots=2)
    q.put(0)
    q.put(1)
    q._buffer_put([object()])  # an item the feeder cannot write (no buffer protocol)
    q.put(2)  # behind it in the buffer
    assert q.get(timeout=5) == 0  # frees a slot: the feeder tries the bad item
    assert q.get(timeout=5) == 1
    assert q.get(timeout=5) == 2  # the feeder went on after reporting
    assert seen == [TypeError]
