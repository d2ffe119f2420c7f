"""shmlink.Value / Array: ctypes objects in named shared memory, guarded by a robust
process-shared lock (ringbuf/shared_object.h).

As multiprocessing's: Value(typecode_or_type, *args, lock=True) and
Array(typecode_or_type, size_or_initializer, *, lock=True) return synchronized wrappers with
.value / indexing / slicing, get_lock() and get_obj(). The lock is recursive (like the
RLock multiprocessing uses) and robust: if a process dies holding it, the next acquirer gets
it (the data may be half-updated; `get_lock().owner_died` tells).

Ownership: the creating process owns the name; it is removed when the creator's object
dies or on unlink(). Children get the object by pickling (by name), under fork or spawn.
"""
import ctypes
import os
import threading
import time
import weakref

from . import _names
from ._shmlink import _SharedObject

__all__ = ["Value", "Array", "RawValue", "RawArray", "SharedLock"]

_TYPECODES = {
    "c": ctypes.c_char, "u": ctypes.c_wchar, "b": ctypes.c_byte, "B": ctypes.c_ubyte,
    "h": ctypes.c_short, "H": ctypes.c_ushort, "i": ctypes.c_int, "I": ctypes.c_uint,
    "l": ctypes.c_long, "L": ctypes.c_ulong, "q": ctypes.c_longlong,
    "Q": ctypes.c_ulonglong, "f": ctypes.c_float, "d": ctypes.c_double,
}
_CTYPE_TO_CODE = {v: k for k, v in _TYPECODES.items()}


def _ctype(typecode_or_type):
    if isinstance(typecode_or_type, str):
        try:
            return _TYPECODES[typecode_or_type]
        except KeyError:
            raise ValueError("bad typecode %r (expected one of %s)" %
                             (typecode_or_type, "".join(_TYPECODES))) from None
    if typecode_or_type in _CTYPE_TO_CODE:
        return typecode_or_type
    raise TypeError("shmlink shares simple ctypes types only (typecode or ctypes type)")


def _tag(ctype, count, is_array):
    return (ord(_CTYPE_TO_CODE[ctype]) << 1 | int(is_array)) << 40 | count


class SharedLock:
    """Recursive, process-shared, robust lock (the lock of a Value/Array).

    acquire(block=True, timeout=None) -> bool; release(); usable as a context manager.
    Blocking acquires release the GIL and are interruptible by Ctrl-C.
    """

    def __init__(self, impl):
        self._impl = impl
        self._local = threading.RLock()
        self._count = 0
        self._pid = os.getpid()

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


class _Synchronized:
    def __init__(self, impl, name, ctype, length, lock, creator):
        self._impl = impl
        self._name = name
        self._ctype = ctype
        self._length = length
        self._uselock = bool(lock)
        self._lock = SharedLock(impl)
        mv = memoryview(impl)
        self._obj = (ctype * length if length is not None else ctype).from_buffer(mv)
        self._finalizer = (weakref.finalize(self, _unlink_if_creator, impl, os.getpid())
                           if creator else None)

    def get_lock(self):
        return self._lock

    def get_obj(self):
        return self._obj

    def acquire(self, *args):
        return self._lock.acquire(*args)

    def release(self):
        return self._lock.release()

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *exc):
        return self._lock.__exit__(*exc)

    @property
    def name(self):
        return self._name

    def unlink(self):
        """Removes the name now (creator only)."""
        if self._finalizer is None:
            raise ValueError("only the creating object owns the name")
        self._finalizer()

    def __reduce__(self):
        return (_attach, (type(self), self._name, _CTYPE_TO_CODE[self._ctype], self._length,
                          self._uselock))


def _unlink_if_creator(impl, pid):
    if os.getpid() == pid:
        impl.unlink()


class SynchronizedValue(_Synchronized):
    @property
    def value(self):
        if not self._uselock:
            return self._obj.value
        with self._lock:
            return self._obj.value

    @value.setter
    def value(self, v):
        if not self._uselock:
            self._obj.value = v
            return
        with self._lock:
            self._obj.value = v

    def __repr__(self):
        return "<shmlink.Value %s(%r)>" % (self._ctype.__name__, self._obj.value)


class SynchronizedArray(_Synchronized):
    def __len__(self):
        return self._length

    def __getitem__(self, i):
        if not self._uselock:
            return self._obj[i]
        with self._lock:
            return self._obj[i]

    def __setitem__(self, i, v):
        if not self._uselock:
            self._obj[i] = v
            return
        with self._lock:
            self._obj[i] = v

    def __iter__(self):
        return iter(self[:])

    @property
    def value(self):  # c_char arrays, as multiprocessing's
        with self._lock:
            return self._obj.value

    @property
    def raw(self):
        with self._lock:
            return self._obj.raw

    def __repr__(self):
        return "<shmlink.Array %s%r>" % (self._ctype.__name__, self[:])


def _attach(cls, name, code, length, lock):
    ctype = _TYPECODES[code]
    impl = _SharedObject.attach(name)
    if impl.type_tag != _tag(ctype, length or 1, length is not None):
        raise ValueError("%s is not a shmlink %s of this type" % (name, cls.__name__))
    return cls(impl, name, ctype, length, lock, False)


def _new_name(kind):
    return _names.new_name(kind)


def Value(typecode_or_type, *args, lock=True, ctx=None, name=None):
    """A ctypes value in shared memory, as multiprocessing.Value. lock=False: .value does
    not take the lock (get_lock() still works)."""
    ctype = _ctype(typecode_or_type)
    name = name or _new_name("v")
    impl = _SharedObject.create(name, ctypes.sizeof(ctype), ctypes.sizeof(ctype),
                                _tag(ctype, 1, False))
    v = SynchronizedValue(impl, name, ctype, None, lock, True)
    if args:
        v._obj.value = ctype(*args).value
    return v


def Array(typecode_or_type, size_or_initializer, *, lock=True, ctx=None, name=None):
    """A ctypes array in shared memory, as multiprocessing.Array."""
    ctype = _ctype(typecode_or_type)
    if isinstance(size_or_initializer, int):
        init, n = None, size_or_initializer
    else:
        init = list(size_or_initializer) if not isinstance(size_or_initializer, (bytes, str)) \
            else size_or_initializer
        n = len(init)
    if n <= 0:
        raise ValueError("an Array needs at least one element")
    name = name or _new_name("a")
    impl = _SharedObject.create(name, ctypes.sizeof(ctype) * n, ctypes.sizeof(ctype),
                                _tag(ctype, n, True))
    a = SynchronizedArray(impl, name, ctype, n, lock, True)
    if init is not None:
        a._obj[:] = init
    return a


def RawValue(typecode_or_type, *args, name=None):
    """Value without automatic locking (get_lock() is still available)."""
    return Value(typecode_or_type, *args, lock=False, name=name)


def RawArray(typecode_or_type, size_or_initializer, *, name=None):
    """Array without automatic locking (get_lock() is still available)."""
    return Array(typecode_or_type, size_or_initializer, lock=False, name=name)
