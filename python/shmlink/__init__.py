"""shmlink: zero-copy IPC over POSIX shared memory, with multiprocessing's API.

    import shmlink
    ring = shmlink.Ring.create("/feed", 1 << 20)      # or shmlink.Ring.attach("/feed")
    a, b = shmlink.Pipe()                             # like multiprocessing.Pipe

See docs/python.md for the API, the differences from multiprocessing, and the limits.
"""
# The extension may live in another sys.path entry (bazel-bin/python): merge them.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

from multiprocessing import AuthenticationError, BufferTooShort  # noqa: E402,F401

from ._shmlink import Message, set_spin  # noqa: E402
from ._ring import Ring  # noqa: E402
from .connection import Client, Connection, Listener, Pipe  # noqa: E402
from .queues import JoinableQueue, Queue, SimpleQueue  # noqa: E402
from .sharedctypes import Array, RawArray, RawValue, SharedLock, Value  # noqa: E402
from ._topic import (OverrunError, Topic, TopicMessage, TopicPublisher,  # noqa: E402
                     TopicSubscriber, topic_type_hash)

__all__ = [
    "Array", "AuthenticationError", "BufferTooShort", "Client", "Connection",
    "JoinableQueue", "Listener",
    "Message", "OverrunError", "Pipe", "Queue", "RawArray", "RawValue", "Ring", "SharedLock",
    "SimpleQueue", "Topic", "TopicMessage", "TopicPublisher", "TopicSubscriber", "Value",
    "set_spin", "topic_type_hash",
]
