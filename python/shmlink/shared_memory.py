# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""shmlink.shared_memory: multiprocessing.shared_memory's SharedMemory and ShareableList,
without its resource tracker.

The stdlib registers every SharedMemory, created *or attached*, with a resource-tracker
process that unlinks it when the registering process exits, so a process that merely
attached removes a segment others still use (CPython gh-82300). Here ownership is explicit:
- unlink() removes the name, as in the stdlib (any process may call it);
- the creating process removes a segment it has not unlinked when it exits, as the stdlib's
  tracker does for a creator (track=False keeps it, like the stdlib's 3.13 switch);
- attaching processes never remove anything, whenever and however they exit.
A creator killed by SIGKILL leaves its segment in /dev/shm (no tracker process survives it
to clean up): unlink it by name.

API as the stdlib's: SharedMemory(name=None, create=False, size=0, *, track=True) with
.name, .size, .buf, close(), unlink(), pickling by name; ShareableList(sequence=None, *,
name=None). Names are POSIX shm names; another program (Python or C++) attaches by name.
"""
import atexit
import os
import mmap
import threading

import _posixshmem
from multiprocessing import shared_memory as _std

from . import _names

__all__ = ["SharedMemory", "ShareableList"]

# Names this process created and has not unlinked: removed at its exit (creator only).
_owned = {}
_owned_lock = threading.Lock()


def _unlink_owned_at_exit():
    pid = os.getpid()
    with _owned_lock:
        names = [n for n, p in _owned.items() if p == pid]
        _owned.clear()
    for n in names:
        try:
            _posixshmem.shm_unlink(n)
        except OSError:
            pass


atexit.register(_unlink_owned_at_exit)


class SharedMemory(_std.SharedMemory):
    """multiprocessing.shared_memory.SharedMemory without the resource tracker (see the
    module docstring)."""

    def __init__(self, name=None, create=False, size=0, *, track=True):
        if not size >= 0:
            raise ValueError("'size' must be a positive integer")
        flags = os.O_RDWR
        if create:
            flags |= os.O_CREAT | os.O_EXCL
            if size == 0:
                raise ValueError("'size' must be a positive number different from zero")
        if name is None and not create:
            raise ValueError("'name' can only be None if create=True")
        if name is None:
            name = _names.new_name("shm")
        else:
            name = "/" + name
        self._flags = flags
        self._fd = _posixshmem.shm_open(name, flags, mode=self._mode)
        self._name = name
        try:
            if create and size:
                os.ftruncate(self._fd, size)
            size = os.fstat(self._fd).st_size
            self._mmap = mmap.mmap(self._fd, size)
        except OSError:
            if create:
                self.unlink()
            raise
        if create and track:
            with _owned_lock:
                _owned[name] = os.getpid()
        self._size = size
        self._buf = memoryview(self._mmap)

    def unlink(self):
        """Removes the name (as the stdlib's; attached mappings stay valid)."""
        if self._name:
            with _owned_lock:
                _owned.pop(self._name, None)
            _posixshmem.shm_unlink(self._name)


class ShareableList(_std.ShareableList):
    """multiprocessing.shared_memory.ShareableList over shmlink's SharedMemory."""


# The stdlib's __init__, reading SharedMemory from a namespace where it is ours.
ShareableList.__init__ = type(_std.ShareableList.__init__)(
    _std.ShareableList.__init__.__code__, dict(vars(_std), SharedMemory=SharedMemory),
    "__init__", _std.ShareableList.__init__.__defaults__)
ShareableList.__init__.__kwdefaults__ = _std.ShareableList.__init__.__kwdefaults__
