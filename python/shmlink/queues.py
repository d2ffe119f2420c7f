# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""shmlink.Queue / JoinableQueue / SimpleQueue: multiprocessing's queues over a shared-memory
MPMC queue (ringbuf/mpmc_queue.h). No pipe: put() copies the pickled object into a slot in
shared memory and get() unpickles it from there.

Unbounded queues (maxsize <= 0) never block a put, as multiprocessing's: when every slot is
taken, put() keeps the pickled message in a per-process buffer and a feeder thread (started
then, as multiprocessing starts its own) moves the buffer into the slots as getters free
them. Once the buffer is in use, later puts of this process queue behind it (FIFO per
process). close() lets the feeder finish; join_thread() waits for it; at exit the
buffer is flushed unless cancel_join_thread() was called.

Wire format of a slot: one tag byte, then
  0x00  raw bytes (put(b) with type(b) is bytes: not pickled)
  0x01  a pickle (multiprocessing.reduction.ForkingPickler)
  0x02  a spilled message: inner tag byte + the name of a shm segment holding the payload
        (objects larger than the slot; the getter unlinks the segment after reading)
"""
import collections
import itertools
import mmap
import os
import queue as _queue
import threading
import weakref

import _posixshmem
from multiprocessing import reduction as _reduction
from multiprocessing import util as _util

from . import _names
from ._shmlink import _Queue

__all__ = ["Queue", "JoinableQueue", "SimpleQueue"]

#: Largest message stored inline in a slot (bigger ones spill to their own segment).
DEFAULT_SLOT_SIZE = 8192
#: Slot count when maxsize is 0 (unbounded): beyond it puts wait in the feeder's buffer.
DEFAULT_SLOTS = 1024
_MAX_SLOTS = 1 << 16

_TAG_BYTES, _TAG_PICKLE, _TAG_SPILL = b"\x00", b"\x01", b"\x02"
_dumps = _reduction.ForkingPickler.dumps
_loads = _reduction.ForkingPickler.loads
_spill_counter = itertools.count()


def _default_name(kind):
    return _names.new_name(kind)


def _pow2_at_least(n):
    p = 2
    while p < n:
        p <<= 1
    return p


def _read_spill(name):
    fd = _posixshmem.shm_open(name, os.O_RDWR, 0o600)
    try:
        size = os.fstat(fd).st_size
        mm = mmap.mmap(fd, size)
    finally:
        os.close(fd)
        try:
            _posixshmem.shm_unlink(name)
        except FileNotFoundError:
            pass
    return mm


def _decode(mv):
    tag = mv[0]
    if tag == 0:
        return bytes(mv[1:])
    if tag == 1:
        return _loads(mv[1:])
    if tag == 2:
        inner = mv[1]
        mm = _read_spill(bytes(mv[2:]).decode("ascii"))
        try:
            with memoryview(mm) as body:
                return bytes(body) if inner == 0 else _loads(body)
        finally:
            mm.close()
    raise ValueError("corrupt queue message (tag %d)" % tag)


def _cleanup(impl, creator_pid, name):
    """Runs when the creator's Queue object dies (or at its interpreter's exit)."""
    if os.getpid() != creator_pid or not impl.owns_name:
        return
    impl.unlink()
    # Spilled payloads nobody got: their names start with the queue's.
    prefix = name[1:] + ".s"
    try:
        for f in os.listdir("/dev/shm"):
            if f.startswith(prefix):
                try:
                    _posixshmem.shm_unlink("/" + f)
                except OSError:
                    pass
    except OSError:
        pass


class Queue:
    """A drop-in for multiprocessing.Queue backed by shared memory.

    Queue(maxsize=0, *, name=None, slot_size=8192, slots=None). maxsize <= 0 means
    unbounded (then put() only waits if all `slots` slots are taken). Objects bigger than
    slot_size travel through a per-message shm segment (slower; raise slot_size for big
    messages). The creating process owns the names: they are removed when its Queue object
    dies or when it calls unlink(); other processes attach by name (pickling sends the
    name, so a Queue can go to Process children under fork and spawn, or through another
    queue). close() only ends this process's use, as in multiprocessing.
    """

    _kind = "q"
    _joinable = False

    def __init__(self, maxsize=0, *, name=None, slot_size=DEFAULT_SLOT_SIZE, slots=None,
                 ctx=None):
        maxsize = int(maxsize)
        if maxsize <= 0:
            maxsize = 0
        if maxsize >= 1 << 31:
            raise ValueError("maxsize too large")
        if slots is None:
            slots = DEFAULT_SLOTS if maxsize == 0 else min(_pow2_at_least(maxsize), _MAX_SLOTS)
        name = name or _default_name(self._kind)
        if not name.startswith("/"):
            name = "/" + name
        impl = _Queue.create(name, int(slots), int(slot_size), maxsize, True)
        self._setup(impl, name)
        self._finalizer = weakref.finalize(self, _cleanup, impl, os.getpid(), name)

    def _setup(self, impl, name):
        self._impl = impl
        self._name = name
        self._maxsize = impl.maxsize
        self._slot_payload = impl.slot_size - 1
        self._closed = False
        self._finalizer = None
        self._reset_feeder()

    # -- the feeder (unbounded queues whose slots are all taken) ---------------------
    def _reset_feeder(self):
        self._buffer = collections.deque()  # parts lists waiting for a slot
        self._notempty = threading.Condition(threading.Lock())
        self._thread = None
        self._joincancelled = False
        self._feeder_pid = os.getpid()

    def _buffer_put(self, parts):
        if self._feeder_pid != os.getpid():  # inherited across fork: not ours
            self._reset_feeder()
        if self._joinable:
            self._impl.begin_task()  # counted now: join() must wait for buffered items
        with self._notempty:
            if self._thread is None:
                self._start_feeder()
            self._buffer.append(parts)
            self._notempty.notify()

    def _start_feeder(self):
        t = threading.Thread(target=_feed, name="QueueFeederThread", daemon=True,
                             args=(self._buffer, self._notempty, self._impl,
                                   self._on_queue_feeder_error))
        self._thread = t
        t.start()
        if not self._joincancelled:
            self._jointhread = _util.Finalize(self, _finalize_join, [weakref.ref(t)],
                                              exitpriority=-5)
        self._close_feeder = _util.Finalize(self, _finalize_close,
                                            [self._buffer, self._notempty], exitpriority=10)

    @classmethod
    def attach(cls, name):
        """Attaches to an existing queue by name (never owns it)."""
        self = cls.__new__(cls)
        self._setup(_Queue.attach(name), name)
        return self

    def __reduce__(self):
        return (_attach, (type(self), self._name))

    def _checked_timeout(self, block, timeout):
        """The timeout of a put/get off the fast path (0 when not blocking); raises
        ValueError if the queue is closed or the timeout negative."""
        if self._closed:
            raise ValueError("Queue %r is closed" % self)
        if not block:
            return 0
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        return timeout

    # -- putting ----------------------------------------------------------------------
    def _parts(self, obj):
        if type(obj) is bytes:
            tag, body = _TAG_BYTES, obj
        else:
            tag, body = _TAG_PICKLE, _dumps(obj)
        if len(body) <= self._slot_payload:
            return [tag, body], None
        spill = "%s.s%d.%d" % (self._name, os.getpid(), next(_spill_counter))
        fd = _posixshmem.shm_open(spill, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, max(len(body), 1))
            with mmap.mmap(fd, max(len(body), 1)) as mm:
                mm[:len(body)] = body
        except BaseException:
            _posixshmem.shm_unlink(spill)
            raise
        finally:
            os.close(fd)
        return [_TAG_SPILL, tag, spill.encode("ascii")], spill

    def put(self, obj, block=True, timeout=None):
        if self._maxsize == 0:
            return self._put_unbounded(obj)
        if block and timeout is None and not self._closed:  # fast path
            try:
                if self._impl.put_object(obj, _dumps, None, self._joinable):
                    return
            except TimeoutError:
                raise _queue.Full from None
        timeout = self._checked_timeout(block, timeout)
        try:
            if self._impl.put_object(obj, _dumps, timeout, self._joinable):
                return
        except TimeoutError:
            raise _queue.Full from None
        parts, spill = self._parts(obj)  # too big for a slot: spill
        try:
            self._impl.put(parts, timeout, self._joinable)
        except TimeoutError:
            if spill:
                _posixshmem.shm_unlink(spill)
            raise _queue.Full from None
        except BaseException:
            if spill:
                _posixshmem.shm_unlink(spill)
            raise

    def _put_unbounded(self, obj):
        """Never blocks: a slot if one is free and nothing of ours waits, else the
        feeder's buffer."""
        if self._closed:
            raise ValueError("Queue %r is closed" % self)
        if not self._buffer:
            try:
                if self._impl.put_object(obj, _dumps, 0, self._joinable):
                    return
            except TimeoutError:
                pass  # every slot is taken
            else:
                parts, spill = self._parts(obj)  # too big for a slot: spill
                try:
                    self._impl.put(parts, 0, self._joinable)
                    return
                except TimeoutError:
                    pass
                except BaseException:
                    if spill:
                        _posixshmem.shm_unlink(spill)
                    raise
                self._buffer_put(parts)
                return
        self._buffer_put(self._parts(obj)[0])

    def put_nowait(self, obj):
        return self.put(obj, False)

    @staticmethod
    def _on_queue_feeder_error(e, obj):
        """As multiprocessing's hook: called in the feeder thread when moving a buffered
        item into the queue fails (`obj` is the pickled item; pickling itself happens in
        put(), which raises). Prints the traceback; override to handle it."""
        import traceback
        traceback.print_exc()

    # -- getting ----------------------------------------------------------------------
    def get(self, block=True, timeout=None):
        if block and timeout is None and not self._closed:  # fast path
            return self._impl.get(_decode, None, _loads)
        timeout = self._checked_timeout(block, timeout)
        try:
            return self._impl.get(_decode, timeout, _loads)
        except TimeoutError:
            raise _queue.Empty from None

    def get_nowait(self):
        return self.get(False)

    async def get_async(self):
        """shmlink extension: `await q.get_async()`, get() for asyncio. The queue has no
        file descriptor, so this polls without blocking the loop (get_nowait, then sleeps
        growing from 50 us to 5 ms while it stays empty): cancelling it never loses an
        item; latency after a quiet spell is at most ~5 ms."""
        import asyncio
        delay = 50e-6
        while True:
            try:
                return self.get(False)
            except _queue.Empty:
                pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5e-3)

    # -- state ------------------------------------------------------------------------
    def qsize(self):
        """Items in the slots, plus this process's items still in the feeder's buffer
        (unlike macOS, never raises)."""
        n = self._impl.qsize()
        if self._buffer and self._feeder_pid == os.getpid():
            n += len(self._buffer)
        return n

    def empty(self):
        return self.qsize() == 0

    def full(self):
        return self._maxsize > 0 and self._impl.qsize() >= self._maxsize

    @property
    def name(self):
        return self._name

    @property
    def maxsize(self):
        return self._maxsize

    def stats(self):
        """Counters of the underlying MPMC queue (pushes, pops, redelivered, ...)."""
        return self._impl.stats()

    def close(self):
        """No more puts/gets from this process. The feeder (if any) still moves what it
        buffered into the queue, then drops this process's queue handles."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None and self._feeder_pid == os.getpid():
            self._close_feeder()  # the feeder closes the handles when it has flushed
        else:
            self._impl.close()

    def join_thread(self):
        """Waits for the feeder thread (after close()), as multiprocessing's."""
        if not self._closed:
            raise ValueError("Queue %r not closed" % self)
        if self._thread is not None and self._feeder_pid == os.getpid():
            self._thread.join()

    def cancel_join_thread(self):
        """Do not wait for the feeder at exit (buffered items may be lost)."""
        self._joincancelled = True
        try:
            self._jointhread.cancel()
        except AttributeError:
            pass

    def unlink(self):
        """Removes the queue's names now (creator only; attached handles keep working)."""
        if self._finalizer is None:
            raise ValueError("only the creating Queue object owns the name")
        self._finalizer()

    def __repr__(self):
        return "<shmlink.%s %r maxsize=%d>" % (type(self).__name__, self._name, self._maxsize)


class JoinableQueue(Queue):
    """A drop-in for multiprocessing.JoinableQueue (task_done/join via shared counters)."""

    _kind = "jq"
    _joinable = True

    def task_done(self):
        self._impl.task_done()

    def join(self, timeout=None):
        """Blocks until every item put was task_done(). shmlink extension: timeout
        (seconds) raises TimeoutError."""
        self._impl.join(timeout)


class SimpleQueue(Queue):
    """A drop-in for multiprocessing.SimpleQueue: get, put, empty, close."""

    _kind = "sq"

    def __init__(self, *, name=None, slot_size=DEFAULT_SLOT_SIZE, slots=None, ctx=None):
        super().__init__(0, name=name, slot_size=slot_size, slots=slots)

    def put(self, obj):
        super().put(obj)

    def get(self):
        return super().get()


def _attach(cls, name):
    return cls.attach(name)


_STOP = object()


def _feed(buffer, notempty, impl, on_error):
    """Feeder thread: moves buffered messages into the slots in order (blocking while
    they are all taken, with the GIL released), until _STOP; then drops the handles."""
    while True:
        with notempty:
            while not buffer:
                notempty.wait()
            parts = buffer[0]
        if parts is _STOP:
            impl.close()
            return
        try:
            impl.put(parts, None, False)
        except Exception as e:  # as multiprocessing's feeder: report through the hook, go on
            on_error(e, parts)
        with notempty:
            buffer.popleft()


def _finalize_close(buffer, notempty):
    with notempty:
        buffer.append(_STOP)
        notempty.notify()


def _finalize_join(twr):
    t = twr()
    if t is not None:
        t.join()
