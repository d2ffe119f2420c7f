# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""Public API of shmlink (stubs for editors)."""
from multiprocessing import AuthenticationError as AuthenticationError
from multiprocessing import BufferTooShort as BufferTooShort

from multiprocessing import *  # noqa: F401,F403 (the drop-in re-exports the stdlib's names)

from ._context import ShmlinkContext as ShmlinkContext
from ._context import get_context as get_context
from ._ring import Ring as Ring
from ._shmlink import Message as Message
from . import reduction as reduction
from . import shared_memory as shared_memory
from ._topic import OverrunError as OverrunError
from ._topic import Topic as Topic
from ._topic import TopicMessage as TopicMessage
from ._topic import TopicPublisher as TopicPublisher
from ._topic import TopicSubscriber as TopicSubscriber
from ._topic import topic_type_hash as topic_type_hash
from .connection import Client as Client
from .connection import Connection as Connection
from .connection import Listener as Listener
from .connection import Pipe as Pipe
from .queues import JoinableQueue as JoinableQueue
from .queues import Queue as Queue
from .queues import SimpleQueue as SimpleQueue
from .sharedctypes import Array as Array
from .sharedctypes import RawArray as RawArray
from .sharedctypes import RawValue as RawValue
from .sharedctypes import SharedLock as SharedLock
from .sharedctypes import Value as Value

def set_spin(seconds: float) -> None: ...

__version__: str
