# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""shmlink: zero-copy IPC over POSIX shared memory, with multiprocessing's API.

    import shmlink as multiprocessing                 # a drop-in: change one import
    ring = shmlink.Ring.create("/feed", 1 << 20)      # or shmlink.Ring.attach("/feed")
    a, b = shmlink.Pipe()                             # like multiprocessing.Pipe

Everything `multiprocessing` exports is here: shmlink's own Queue, JoinableQueue,
SimpleQueue, Pipe, Value, Array, RawValue, RawArray (and shmlink.connection's Listener,
Client, wait), the stdlib's objects elsewhere (Process, Pool, Lock, Event, Manager, ...).
See docs/python.md for the API, the differences from multiprocessing, and the limits.
"""
# The extension may live in another sys.path entry (bazel-bin/python): merge them.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

import multiprocessing as _mp  # noqa: E402

from ._version import __version__  # noqa: E402,F401

# The stdlib's names first (as multiprocessing/__init__.py binds them, from the default
# context), then shmlink's objects over them.
globals().update((_n, getattr(_mp, _n)) for _n in _mp.__all__)

from multiprocessing import AuthenticationError, BufferTooShort  # noqa: E402,F401
# Submodules a multiprocessing program reaches as attributes (multiprocessing.pool.ThreadPool,
# multiprocessing.managers.BaseManager, ...): the stdlib's, except shmlink's own below.
from multiprocessing import (context, dummy, managers, pool, process,  # noqa: E402,F401
                             spawn, synchronize, util)

from ._shmlink import Message, set_spin  # noqa: E402
from ._ring import Ring  # noqa: E402
from . import connection, queues, reduction, shared_memory, sharedctypes  # noqa: E402,F401
from .connection import Client, Connection, Listener, Pipe  # noqa: E402
from .queues import JoinableQueue, Queue, SimpleQueue  # noqa: E402
from .sharedctypes import Array, RawArray, RawValue, SharedLock, Value  # noqa: E402
from ._context import ShmlinkContext, get_context  # noqa: E402
from ._topic import (OverrunError, Topic, TopicMessage, TopicPublisher,  # noqa: E402
                     TopicSubscriber, topic_type_hash)

__all__ = sorted(set(_mp.__all__) | {
    "Client", "Connection", "Listener", "Message", "OverrunError", "Ring", "SharedLock",
    "ShmlinkContext", "Topic", "TopicMessage", "TopicPublisher", "TopicSubscriber",
    "set_spin", "topic_type_hash",
})
