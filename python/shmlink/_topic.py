# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""shmlink.Topic: publish/subscribe in POSIX shared memory (one publisher, many subscribers).

    topic = shmlink.Topic.create("/quotes", capacity=1 << 20, history=16)
    pub = topic.publisher()
    pub.send({"px": 1.5})                 # any picklable object, bytes, or a NumPy array

    topic = shmlink.Topic.attach("/quotes")      # any process, by name
    sub = topic.subscriber()
    obj = sub.recv()                      # the next message, decoded
    arr = sub.recv_array(dtype=quote_dtype)     # NumPy view into shared memory (no copy)

Every subscriber receives every message (after the last `history` ones, for a late joiner).
Policies: "block" (the publisher waits for the slowest live subscriber) or "overwrite" (the
publisher never waits; a lapped subscriber skips to the oldest intact message and counts
what it lost in `lost`).
"""
import pickle
import struct

from ._ring import ARRAY_MAGIC, _shm_name, decode_array_header, encode_array_header
from ._shmlink import _Topic, topic_type_hash

__all__ = ["Topic", "TopicPublisher", "TopicSubscriber", "TopicMessage", "OverrunError",
           "topic_type_hash"]

_PICKLE_HEAD = struct.Struct("<BB")


class OverrunError(RuntimeError):
    """A message was overwritten by the publisher while it was read in place (overwrite
    policy): the bytes read may be torn. `lost` is the number of messages lost, that one
    included; the subscriber continues with the oldest intact message."""

    def __init__(self, lost):
        super().__init__("overrun: %d message(s) overwritten before they were read" % lost)
        self.lost = lost


def _is_numpy_array(obj):
    return type(obj).__module__ == "numpy" and hasattr(obj, "__array_interface__")


def _decode(mv):
    """A message's Python value: a pickle is unpickled, an array frame becomes an ndarray
    (a copy), anything else is returned as bytes."""
    n = len(mv)
    if n >= 3 and mv[0] == 0x80 and 2 <= mv[1] <= 5 and mv[n - 1] == 0x2E:  # PROTO .. STOP
        try:
            return pickle.loads(mv)
        except Exception:  # noqa: BLE001 - not a pickle after all: raw bytes
            pass
    if n >= 4 and bytes(mv[:4]) == ARRAY_MAGIC:
        import numpy as np
        dtype_str, shape, offset = decode_array_header(mv)
        return np.frombuffer(mv, dtype=np.dtype(dtype_str), offset=offset).reshape(shape).copy()
    return bytes(mv)


class TopicMessage:
    """One received message, in place in shared memory.

    Use it as `with sub.recv_view() as mv:`; at the end of the block the message is
    released and, under the overwrite policy, checked: OverrunError if the publisher
    overwrote it meanwhile (what was read may be torn). `seq` is its sequence number."""

    def __init__(self, sub, sample):
        self._sub = sub
        self._sample = sample
        self._mv = memoryview(sample)
        self.seq = sample.seq

    def __enter__(self):
        return self._mv

    def __exit__(self, *exc):
        self.release()

    def __len__(self):
        return len(self._mv)

    def __buffer__(self, flags):  # Python 3.12+
        return self._mv

    @property
    def view(self):
        return self._mv

    def release(self):
        """Ends the read; raises OverrunError if the message was overwritten meanwhile."""
        if self._mv is None:
            return
        self._mv.release()
        self._mv = None
        self._sub._release_current(self)


class TopicPublisher:
    """The topic's one publisher (the role is held until close()/release())."""

    def __init__(self, topic, handle):
        self._topic = topic
        self._h = handle

    @property
    def next_sequence(self):
        return self._h.next_sequence

    def send_bytes(self, data, *, timeout=None):
        """Publishes the bytes of a buffer as one message; returns its sequence number."""
        return self._h.send_parts([data], timeout)

    def send_array(self, arr, *, timeout=None):
        """Publishes a NumPy array as an array frame (dtype, shape, data)."""
        import numpy as np
        a = np.ascontiguousarray(arr)
        if a.dtype.hasobject:
            raise ValueError("object arrays cannot be sent")
        header = encode_array_header(a.dtype.str, a.shape)
        return self._h.send_parts([header, a.reshape(-1).view(np.uint8) if a.size else b""],
                                  timeout)

    def send(self, obj, *, timeout=None):
        """Publishes `obj`: bytes-like objects as their bytes, NumPy arrays as an array
        frame (or, on a typed topic, as their raw bytes), anything else pickled."""
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return self.send_bytes(obj, timeout=timeout)
        if _is_numpy_array(obj):
            if self._topic.type_size:
                import numpy as np
                return self.send_bytes(np.ascontiguousarray(obj).reshape(-1).view(np.uint8),
                                       timeout=timeout)
            return self.send_array(obj, timeout=timeout)
        return self.send_bytes(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL), timeout=timeout)

    def close(self):
        """Marks end of stream: subscribers drain, then get EOFError. Keeps the role."""
        self._h.close()

    def release(self):
        """Gives the publisher role up (another process may take it); not end of stream."""
        self._h.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class TopicSubscriber:
    """One subscriber. It holds at most one message in place: the next receive releases
    the previous one (so a view from recv_view()/recv_array() is valid until then; copy what
    you keep). Blocking calls take timeout=None (forever), seconds, or 0; they release the
    GIL and are interruptible by Ctrl-C. EOFError: the publisher closed the stream or died
    (after everything was received); TimeoutError."""

    def __init__(self, topic, handle):
        self._topic = topic
        self._h = handle
        self._current = None

    @property
    def lost(self):
        """Messages lost to overruns so far (overwrite policy)."""
        return self._h.lost

    @property
    def next_sequence(self):
        return self._h.next_sequence

    def _take(self, timeout):
        self._current = None
        return self._h.receive(timeout)

    def _release_current(self, msg):
        if self._current is msg:
            self._current = None
            lost = self._h.release()
            if lost is not None:
                raise OverrunError(lost)

    def recv_view(self, *, timeout=None):
        """The next message in place, as a TopicMessage (zero copy)."""
        msg = TopicMessage(self, self._take(timeout))
        self._current = msg
        return msg

    def recv_bytes(self, *, timeout=None):
        """The next message, copied into bytes (never torn: a torn copy is retried)."""
        self._current = None
        return self._h.recv_bytes(timeout)

    def recv(self, *, timeout=None):
        """The next message decoded: unpickled, an ndarray for an array frame, else bytes."""
        while True:
            msg = self.recv_view(timeout=timeout)
            try:
                value = _decode(msg.view)
                msg.release()
                return value
            except OverrunError:
                continue  # torn while decoding: counted in lost, take the next one

    def recv_array(self, dtype=None, *, timeout=None):
        """The next message as a read-only NumPy array whose data lies in the shared mapping
        (no copy). With `dtype`, the whole payload is an array of that dtype (e.g. the
        structured dtype of a C++ struct); without, the message must be an array frame
        (TopicPublisher.send_array). Valid until the next receive; under the overwrite
        policy call release() after using it: OverrunError means it may have been torn."""
        import numpy as np
        sample = self._take(timeout)
        self._current = sample
        if dtype is not None:
            dt = np.dtype(dtype)
            if len(sample) % dt.itemsize != 0:
                raise ValueError("message size %d is not a multiple of the dtype's itemsize %d"
                                 % (len(sample), dt.itemsize))
            return np.frombuffer(sample, dtype=dt)
        with memoryview(sample) as mv:
            dtype_str, shape, offset = decode_array_header(mv)
        dt = np.dtype(dtype_str)
        count = 1
        for s in shape:
            count *= s
        if offset + count * dt.itemsize != len(sample):
            raise ValueError("array message length does not match its header")
        return np.frombuffer(sample, dtype=dt, count=count, offset=offset).reshape(shape)

    def release(self):
        """Releases the held message; OverrunError if it was overwritten while held."""
        self._current = None
        lost = self._h.release()
        if lost is not None:
            raise OverrunError(lost)

    def poll(self, timeout=0.0):
        """True if a receive would not block."""
        return self._h.poll(timeout)

    def fileno(self):
        """An eventfd, readable when messages may be pending (for select/poll/asyncio):
        read it (os.read(fd, 8)) first, then receive with timeout=0 until TimeoutError."""
        return self._h.fileno()

    def close(self):
        """Leaves the topic (the publisher stops waiting for this subscriber)."""
        self._current = None
        self._h.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        """Messages (decoded) until the stream ends."""
        while True:
            try:
                yield self.recv()
            except EOFError:
                return


class Topic:
    """A named topic. Create with Topic.create(name, ...) and attach with Topic.attach(name).

    Options (create): capacity (log bytes, power of two >= 4096), max_message_size (0:
    capacity/4 - 16), max_subscribers (default 256), history (a late joiner first gets the
    last K messages), policy ("block" or "overwrite"), and for a typed topic shared with
    C++ (Topic::Create<T>): type_name (the C++ type's name, e.g. "feed::Quote") with dtype
    (or type_size/type_align). The creator owns the name: close() unlinks it unless
    unlink_on_close=False. Attach with type_name/dtype to check the topic's type
    (TypeError on mismatch)."""

    def __init__(self, handle, name):
        self._h = handle
        self._name = name

    @classmethod
    def create(cls, name, *, capacity=1 << 20, max_message_size=0, max_subscribers=256,
               history=0, policy="block", type_name=None, dtype=None, type_size=0,
               type_align=0, unlink_on_close=True):
        if policy not in ("block", "overwrite"):
            raise ValueError("policy must be 'block' or 'overwrite'")
        type_hash = 0
        if dtype is not None:
            import numpy as np
            dt = np.dtype(dtype)
            type_size = type_size or dt.itemsize
            type_align = type_align or dt.alignment
        if type_name is not None:
            if not type_size or not type_align:
                raise ValueError("a typed topic needs dtype= or type_size= and type_align=")
            type_hash = topic_type_hash(type_name)
        elif type_size or type_align:
            raise ValueError("a typed topic needs type_name=")
        name = _shm_name(name)
        return cls(_Topic.create(name, int(capacity), int(max_message_size),
                                 int(max_subscribers), int(history), policy == "overwrite",
                                 int(type_size), int(type_align), type_hash,
                                 bool(unlink_on_close)), name)

    @classmethod
    def attach(cls, name, *, type_name=None, dtype=None):
        name = _shm_name(name)
        t = cls(_Topic.attach(name), name)
        if type_name is not None and t.type_hash != topic_type_hash(type_name):
            raise TypeError("topic %s has another message type than %r" % (name, type_name))
        if dtype is not None:
            import numpy as np
            if t.type_size != np.dtype(dtype).itemsize:
                raise TypeError("topic %s carries %d-byte messages, dtype has %d"
                                % (name, t.type_size, np.dtype(dtype).itemsize))
        return t

    name = property(lambda self: self._name)
    capacity = property(lambda self: self._h.capacity)
    max_message_size = property(lambda self: self._h.max_message_size)
    max_subscribers = property(lambda self: self._h.max_subscribers)
    history = property(lambda self: self._h.history)
    policy = property(lambda self: "overwrite" if self._h.overwrite else "block")
    type_size = property(lambda self: self._h.type_size)
    type_align = property(lambda self: self._h.type_align)
    type_hash = property(lambda self: self._h.type_hash)
    subscriber_count = property(lambda self: self._h.subscriber_count)
    published = property(lambda self: self._h.published)

    def publisher(self):
        """Claims the publisher role (RuntimeError if a live process holds it)."""
        return TopicPublisher(self, self._h.publisher())

    def subscriber(self):
        """Joins as a new subscriber (RuntimeError when all slots are held)."""
        return TopicSubscriber(self, self._h.subscriber())

    def unlink(self):
        self._h.unlink()

    def close(self):
        """Drops this handle (the creator's unlinks the name once no handle of this process
        uses the mapping any more)."""
        self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        return (Topic.attach, (self._name,))

    def __repr__(self):
        return "<shmlink.Topic %r policy=%s capacity=%d>" % (self._name, self.policy,
                                                              self.capacity)
