# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""shmlink.Value / Array / RawValue / RawArray: multiprocessing.sharedctypes, with the
ctypes objects living in named shared memory (ringbuf/shared_object.h) instead of
multiprocessing's anonymous heap arena.

As multiprocessing's, and built from its own pieces:
- RawValue/RawArray return real ctypes objects (buffer protocol: memoryview, np.frombuffer)
  of any ctypes type or typecode ('i', 'd', 'c', 'u', ...; c_bool, c_wchar, Structures,
  arrays of Structures).
- Value/Array wrap them in multiprocessing's Synchronized classes: lock=True gives the
  default lock, lock=False the raw object, any other object with acquire/release (a
  multiprocessing Lock or RLock, ...) is used as is and returned by get_lock().
- They go to children as multiprocessing's do: inherited under fork, pickled while a
  Process is spawned (spawn, forkserver); pickling elsewhere raises RuntimeError.

shmlink's additions: the default lock is the segment's robust process-shared mutex
(SharedLock: recursive; if its holder dies the next acquire() succeeds and
`get_lock().owner_died` is True), and each object has a name (`segment_name(obj)`) by which
another program can attach (`attach(name, typecode_or_type, size=None)`).

Ownership: the creating process owns the name; it is removed when the creator's last
reference to the object dies (or at its exit). Attachers never remove it.
"""
import ctypes
import os
import threading
import time
import weakref

import multiprocessing as _mp
from multiprocessing import sharedctypes as _std

from . import _names
from ._shmlink import _SharedObject

__all__ = ["Value", "Array", "RawValue", "RawArray", "SharedLock", "synchronized", "copy",
           "attach", "segment_name"]

typecode_to_type = dict(_std.typecode_to_type)
_CTYPE_TO_CODE = {v: k for k, v in typecode_to_type.items()}
_GENERIC_TAG = 0x43545950 << 16  # "CTYP": a ctypes type without a typecode

synchronized = _std.synchronized
copy = _std.copy


def _tag(type_):
    """The segment's type tag: typecode, array flag and count for the simple types (as
    C++ tools read it), a generic tag otherwise."""
    if issubclass(type_, ctypes.Array) and type_._type_ in _CTYPE_TO_CODE:
        return (ord(_CTYPE_TO_CODE[type_._type_]) << 1 | 1) << 40 | type_._length_
    if type_ in _CTYPE_TO_CODE:
        return (ord(_CTYPE_TO_CODE[type_]) << 1) << 40 | 1
    return _GENERIC_TAG


class _ShmBuffer:
    """The shared memory behind one ctypes object (multiprocessing's BufferWrapper role):
    create_memoryview() for sharedctypes.rebuild_ctype; pickles by name."""

    def __init__(self, impl, name, creator):
        self._impl = impl
        self.name = name
        self._finalizer = (weakref.finalize(self, _unlink_if_creator, impl, os.getpid())
                           if creator else None)

    @classmethod
    def create(cls, type_, name=None):
        size = max(ctypes.sizeof(type_), 1)
        name = name or _names.new_name("a" if issubclass(type_, ctypes.Array) else "v")
        elem = ctypes.sizeof(type_._type_) if issubclass(type_, ctypes.Array) else size
        if elem <= 0 or size % elem:
            elem = 1
        return cls(_SharedObject.create(name, size, elem, _tag(type_)), name, True)

    @classmethod
    def attach(cls, name):
        return cls(_SharedObject.attach(name), name, False)

    def create_memoryview(self):
        return memoryview(self._impl)

    def unlink(self):
        """Removes the name now (creator only)."""
        if self._finalizer is None:
            raise ValueError("only the creating process owns the name")
        self._finalizer()

    def __reduce__(self):
        return (_ShmBuffer.attach, (self.name,))


def _unlink_if_creator(impl, pid):
    if os.getpid() == pid:
        impl.unlink()


def _new_value(type_, name=None):
    return _std.rebuild_ctype(type_, _ShmBuffer.create(type_, name), None)


def _type(typecode_or_type):
    t = typecode_to_type.get(typecode_or_type, typecode_or_type)
    if isinstance(t, str):
        raise TypeError("bad typecode %r (expected one of %s or a ctypes type)" %
                        (t, "".join(typecode_to_type)))
    return t


# -- the multiprocessing.sharedctypes API --------------------------------------------------
def RawValue(typecode_or_type, *args, name=None):
    """A ctypes object in shared memory (as multiprocessing.RawValue). shmlink extension:
    name= chooses the segment name."""
    obj = _new_value(_type(typecode_or_type), name)
    obj.__init__(*args)
    return obj


def RawArray(typecode_or_type, size_or_initializer, *, name=None):
    """A ctypes array in shared memory (as multiprocessing.RawArray)."""
    type_ = _type(typecode_or_type)
    if isinstance(size_or_initializer, int):
        return _new_value(type_ * size_or_initializer, name)
    result = _new_value(type_ * len(size_or_initializer), name)
    result.__init__(*size_or_initializer)
    return result


def _synchronize(obj, lock):
    if lock is False:
        return obj
    if lock in (True, None):
        lock = SharedLock(obj._wrapper)
    if not hasattr(lock, "acquire"):
        raise AttributeError("%r has no method 'acquire'" % lock)
    # ctx only matters when lock is None: pass the default context object itself so the
    # start method is not fixed here.
    return synchronized(obj, lock, ctx=_mp.context._default_context)


def Value(typecode_or_type, *args, lock=True, ctx=None, name=None):
    """A synchronized ctypes object in shared memory (as multiprocessing.Value)."""
    return _synchronize(RawValue(typecode_or_type, *args, name=name), lock)


def Array(typecode_or_type, size_or_initializer, *, lock=True, ctx=None, name=None):
    """A synchronized ctypes array in shared memory (as multiprocessing.Array)."""
    return _synchronize(RawArray(typecode_or_type, size_or_initializer, name=name), lock)


# -- shmlink extensions --------------------------------------------------------------------
def segment_name(obj):
    """The shm name of a shmlink shared ctypes object (raw or synchronized)."""
    raw = obj.get_obj() if hasattr(obj, "get_obj") else obj
    wrapper = getattr(raw, "_wrapper", None)
    if not isinstance(wrapper, _ShmBuffer):
        raise TypeError("%r is not a shmlink shared ctypes object" % (obj,))
    return wrapper.name


def attach(name, typecode_or_type, size=None, *, lock=True):
    """Attaches to another program's Value (size=None) or Array (size=n) by name. lock as
    for Value/Array (True: the segment's robust lock, shared with the creator's)."""
    type_ = _type(typecode_or_type)
    if size is not None:
        type_ = type_ * size
    wrapper = _ShmBuffer.attach(name)
    if len(wrapper.create_memoryview()) < ctypes.sizeof(type_):
        raise ValueError("%s is smaller than %s" % (name, type_.__name__))
    return _synchronize(_std.rebuild_ctype(type_, wrapper, None), lock)


class SharedLock:
    """Recursive, process-shared, robust lock: the default lock of a Value/Array, backed by
    the mutex of the object's segment.

    acquire(block=True, timeout=None) -> bool; release(); usable as a context manager.
    Blocking acquires release the GIL and are interruptible by Ctrl-C. Pickles by name.
    """

    def __init__(self, buffer):
        self._buffer = buffer
        self._impl = buffer._impl
        self._local = threading.RLock()
        self._count = 0
        self._pid = os.getpid()

    def __reduce__(self):
        return (SharedLock, (self._buffer,))

    def _after_fork(self):
        if self._pid != os.getpid():
            self._local = threading.RLock()
            self._count = 0
            self._pid = os.getpid()

    def acquire(self, block=True, timeout=None):
        self._after_fork()
        if not block:
            timeout = 0
        t0 = time.monotonic()
        if timeout is None:
            ok = self._local.acquire()
        else:
            ok = self._local.acquire(True, max(0.0, timeout)) if timeout > 0 \
                else self._local.acquire(False)
        if not ok:
            return False
        if self._count == 0:
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - t0))
            try:
                got = self._impl.lock(left)
            except BaseException:
                self._local.release()
                raise
            if not got:
                self._local.release()
                return False
        self._count += 1
        return True

    def release(self):
        self._after_fork()
        if self._count == 0:
            raise RuntimeError("cannot release un-acquired lock")
        # RLock.release raises if another thread owns it: check before touching the count.
        if not self._local._is_owned():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if self._count == 0:
            self._impl.unlock()
        self._local.release()

    @property
    def owner_died(self):
        """True if the last acquire found that the previous holder had died."""
        return self._impl.owner_died

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()

    def __repr__(self):
        return "<shmlink.SharedLock %s count=%d>" % (self._buffer.name, self._count)
