# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""shmlink.Queue / JoinableQueue / SimpleQueue: multiprocessing's queues over a shared-memory
MPMC queue (ringbuf/mpmc_queue.h). No feeder thread, no pipe: put() copies the pickled
object into a slot in shared memory and get() unpickles it from there.

Wire format of a slot: one tag byte, then
  0x00  raw bytes (put(b) with type(b) is bytes: not pickled)
  0x01  a pickle (multiprocessing.reduction.ForkingPickler)
  0x02  a spilled message: inner tag byte + the name of a shm segment holding the payload
        (objects larger than the slot; the getter unlinks the segment after reading)
"""
import itertools
import mmap
import os
import queue as _queue
import weakref

import _posixshmem
from multiprocessing import reduction as _reduction

from . import _names
from ._shmlink import _Queue

__all__ = ["Queue", "JoinableQueue", "SimpleQueue"]

#: Largest message stored inline in a slot (bigger ones spill to their own segment).
DEFAULT_SLOT_SIZE = 8192
#: Slot count when maxsize is 0 (unbounded): put() blocks only when all slots are full.
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

    def put_nowait(self, obj):
        return self.put(obj, False)

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

    # -- state ------------------------------------------------------------------------
    def qsize(self):
        """Exact number of items put and not yet got (unlike macOS, never raises)."""
        return self._impl.qsize()

    def empty(self):
        return self._impl.qsize() == 0

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
        """No more puts/gets from this process (its queue handles are dropped)."""
        if not self._closed:
            self._closed = True
            self._impl.close()

    def join_thread(self):
        """No feeder thread: returns at once (kept for API compatibility)."""
        if not self._closed:
            raise ValueError("Queue %r not closed" % self)

    def cancel_join_thread(self):
        """No feeder thread: nothing to cancel."""

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
