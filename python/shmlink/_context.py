# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""shmlink contexts: multiprocessing contexts whose data-path objects are shmlink's.

get_context(method) wraps the stdlib context of that start method. Everything a context
offers is the stdlib's (Process, Pool, Lock, Event, Manager, start-method functions, ...)
except the objects shmlink implements: Queue, JoinableQueue, SimpleQueue, Pipe, Value,
Array, RawValue, RawArray. Those pickle by name (queues, shared ctypes) or by file
descriptor (Pipe ends), so they reach children under every start method.
"""
import multiprocessing as _mp

__all__ = ["ShmlinkContext", "get_context"]


class ShmlinkContext:
    """A multiprocessing context (see the module docstring)."""

    def __init__(self, base):
        self._base = base

    def __getattr__(self, name):
        return getattr(self._base, name)

    def __dir__(self):
        return sorted(set(dir(self._base)) | set(type(self).__dict__))

    def __repr__(self):
        return "<shmlink context over %r>" % (self._base,)

    # -- shmlink's objects -----------------------------------------------------------
    def Queue(self, maxsize=0):
        from .queues import Queue
        return Queue(maxsize, ctx=self)

    def JoinableQueue(self, maxsize=0):
        from .queues import JoinableQueue
        return JoinableQueue(maxsize, ctx=self)

    def SimpleQueue(self):
        from .queues import SimpleQueue
        return SimpleQueue(ctx=self)

    def Pipe(self, duplex=True):
        from .connection import Pipe
        return Pipe(duplex)

    def Value(self, typecode_or_type, *args, lock=True):
        from .sharedctypes import Value
        return Value(typecode_or_type, *args, lock=lock, ctx=self)

    def Array(self, typecode_or_type, size_or_initializer, *, lock=True):
        from .sharedctypes import Array
        return Array(typecode_or_type, size_or_initializer, lock=lock, ctx=self)

    def RawValue(self, typecode_or_type, *args):
        from .sharedctypes import RawValue
        return RawValue(typecode_or_type, *args)

    def RawArray(self, typecode_or_type, size_or_initializer):
        from .sharedctypes import RawArray
        return RawArray(typecode_or_type, size_or_initializer)

    # -- contexts --------------------------------------------------------------------
    def get_context(self, method=None):
        return get_context(method)


#: Wraps stdlib's default context object itself (not the context it resolves to), so
#: importing shmlink does not fix the start method: set_start_method() still works.
default_context = ShmlinkContext(_mp.context._default_context)


def get_context(method=None):
    """As multiprocessing.get_context: the context of `method` ('fork', 'spawn',
    'forkserver'; None: the default, which is then fixed), with shmlink's
    Queue/Pipe/Value/Array/..."""
    return ShmlinkContext(_mp.get_context(method))
