# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""shmlink.Ring: a named single-producer/single-consumer ring in POSIX shared memory."""
import os
import pickle
import struct

from multiprocessing import BufferTooShort

from . import _aio
from ._shmlink import _Channel, Message

__all__ = ["Ring", "Message", "ARRAY_MAGIC", "encode_array_header", "decode_array_header"]

# Array frame (also written by the C++ helper <shmlink/array_frame.h>):
#   magic "SHMA" | u8 version (1) | u8 ndim | u16 dtype_len | u32 data_offset
#   dtype string (numpy dtype.str, ASCII) | ndim x u64 shape | zero padding to data_offset
# data_offset is a multiple of 64, so the data is as aligned as the message (8 bytes at
# least in the ring). All integers little-endian. Data is C-contiguous.
ARRAY_MAGIC = b"SHMA"
_FIXED = struct.Struct("<4sBBHI")


def _shm_name(name):
    if not isinstance(name, str) or not name:
        raise ValueError("a shared-memory name is a non-empty str")
    return name if name.startswith("/") else "/" + name


def encode_array_header(dtype_str, shape):
    d = dtype_str.encode("ascii")
    body = _FIXED.size + len(d) + 8 * len(shape)
    offset = (body + 63) // 64 * 64
    return (_FIXED.pack(ARRAY_MAGIC, 1, len(shape), len(d), offset) + d +
            struct.pack("<%dQ" % len(shape), *shape)).ljust(offset, b"\0")


def decode_array_header(buf):
    """Returns (dtype_str, shape, data_offset) or raises ValueError."""
    mv = memoryview(buf)
    if len(mv) < _FIXED.size:
        raise ValueError("not an array message (too short)")
    magic, version, ndim, dlen, offset = _FIXED.unpack_from(mv)
    if magic != ARRAY_MAGIC or version != 1:
        raise ValueError("not an array message (bad magic or version)")
    end = _FIXED.size + dlen + 8 * ndim
    if end > offset or offset > len(mv):
        raise ValueError("corrupt array header")
    dtype_str = bytes(mv[_FIXED.size:_FIXED.size + dlen]).decode("ascii")
    shape = struct.unpack_from("<%dQ" % ndim, mv, _FIXED.size + dlen)
    return dtype_str, shape, offset


def _clear_eventfd(fd):
    try:
        os.read(fd, 8)
    except BlockingIOError:
        pass  # already cleared


def _array_parts(arr):
    """[header, data] of an array message (send_array)."""
    import numpy as np
    a = np.asarray(arr)
    if a.dtype.hasobject or a.dtype.fields is not None:
        raise ValueError("send_array supports plain numeric/bytes dtypes only")
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    header = encode_array_header(a.dtype.str, a.shape)
    return [header, a.reshape(-1).view(np.uint8) if a.size else b""]


def _array_from_message(msg):
    """A read-only array over the array message `msg` (a Message), which it keeps."""
    import numpy as np
    with memoryview(msg) as mv:
        dtype_str, shape, offset = decode_array_header(mv)
    dt = np.dtype(dtype_str)
    count = 1
    for s in shape:
        count *= s
    if offset + count * dt.itemsize != len(msg):
        raise ValueError("array message length does not match its header")
    return np.frombuffer(msg, dtype=dt, count=count, offset=offset).reshape(shape)


class Ring:
    """A named SPSC ring: one process sends, one receives; they meet by shm name.

    Create with Ring.create(name, capacity) (capacity: power of two, 256 B .. 4 GiB; the
    largest message is capacity/2 - 8 bytes) and attach with Ring.attach(name). The first
    send claims the producer role, the first receive the consumer role (one live process
    each). The creator owns the name: close() (or the object's end) unlinks it, unless
    created with unlink_on_close=False; attachers never unlink.

    Blocking calls take timeout=None (forever), a number of seconds, or 0 (do not wait);
    they release the GIL and are interruptible by Ctrl-C (KeyboardInterrupt) within 100 ms.
    The receiving side has fileno() (an eventfd) for event loops; recv_async() and
    recv_bytes_async() wait on it.
    Errors: TimeoutError, EOFError (the writer closed and all was read, or it died),
    BrokenPipeError (sending to a closed/dead reader), ValueError (bad argument, message
    too large, not a shmlink ring), FileExistsError/FileNotFoundError.
    """

    def __init__(self, channel, name, creator):
        self._ch = channel
        self._name = name
        self._creator = creator
        self._closed = False

    @classmethod
    def create(cls, name, capacity, *, unlink_on_close=True):
        name = _shm_name(name)
        return cls(_Channel.create_ring(name, int(capacity), unlink_on_close), name, True)

    @classmethod
    def attach(cls, name):
        name = _shm_name(name)
        return cls(_Channel.attach_ring(name), name, False)

    # -- properties ------------------------------------------------------------------
    @property
    def name(self):
        return self._name

    @property
    def capacity(self):
        return self._ch.capacity

    @property
    def max_message_size(self):
        return self._ch.max_message_size

    @property
    def closed(self):
        return self._closed

    def mapping_range(self):
        """(address, size) of this process's mapping of the segment (for tests/debugging)."""
        return self._ch.mapping

    # -- bytes -----------------------------------------------------------------------
    def send_bytes(self, buf, offset=0, size=None, *, timeout=None):
        self._ch.send_bytes(buf, offset, size, timeout)

    def recv_bytes(self, maxlength=None, *, timeout=None):
        return self._ch.recv_bytes(maxlength, timeout)

    def recv_bytes_into(self, buf, offset=0, *, timeout=None):
        n, whole = self._ch.recv_bytes_into(buf, offset, timeout)
        if whole is not None:
            raise BufferTooShort(whole)
        return n

    def recv_view(self, *, timeout=None):
        """The next message in place, as a shmlink.Message (zero copy).

        Use it as `with ring.recv_view() as mv:`; mv is a read-only memoryview that is
        released at the end of the block (using it afterwards raises ValueError, asking
        the Message for a new buffer raises BufferError). Until released, the message
        occupies ring space.
        """
        return self._ch.recv_view(timeout, False)

    def poll(self, timeout=0.0):
        """True if a receive would not block (a message, or end of stream)."""
        return self._ch.poll(timeout)

    def fileno(self):
        """The receiving side's eventfd, for select/poll/epoll and asyncio's add_reader.

        Readable when a message may be pending, when the writer closed the ring and when
        the writer died. Protocol: when it is readable, read it first (os.read(fd, 8); it
        is non-blocking), then receive with timeout=0 (or check poll()) until nothing is
        left; a readiness with nothing to receive is possible (drain and wait again). The
        first call claims the consumer role, as the first receive does, and starts a
        helper thread that sleeps on the ring's futex (the writer's fast path does not
        change). The descriptor belongs to the Ring: do not close it; close() does."""
        return self._ch.consumer_fd()

    async def _readable(self):
        """Returns once a receive would not block (waits on fileno() in the event loop)."""
        # The eventfd is read after each wake-up, before the next poll(0): see fileno().
        await _aio.wait_readable(self, _clear_eventfd)

    async def recv_async(self):
        """`await ring.recv_async()`: recv() for asyncio (waits on fileno())."""
        await self._readable()
        return self.recv()

    async def recv_bytes_async(self, maxlength=None):
        """recv_bytes() for asyncio (waits on fileno())."""
        await self._readable()
        return self.recv_bytes(maxlength)

    # -- objects -----------------------------------------------------------------------
    def send(self, obj, *, timeout=None):
        self._ch.send_bytes(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL), 0, None, timeout)

    def recv(self, *, timeout=None):
        return self._ch.recv_decode(pickle.loads, timeout)

    # -- NumPy -------------------------------------------------------------------------
    def send_array(self, arr, *, timeout=None):
        """Sends a NumPy array (dtype, shape, data); one copy into the ring."""
        self._ch.send_parts(_array_parts(arr), timeout)

    def recv_array(self, *, timeout=None):
        """Receives an array without copying: its data lies in the shared mapping.

        The array is read-only and keeps its message in the ring while it (or any view of
        it) lives; ring space is freed when the last such array dies. A consumer that
        keeps arrays alive therefore holds ring space: keep at most about
        capacity / message size of them, or copy (arr.copy()) what you keep.
        """
        return _array_from_message(self._ch.recv_view(timeout, True))

    # -- lifetime ----------------------------------------------------------------------
    def close(self):
        """Ends this handle: a sender marks end of stream (the reader gets EOFError after
        draining), a receiver tells the sender to stop. The creator unlinks the name."""
        if not self._closed:
            self._closed = True
            self._ch.close()

    def unlink(self):
        """Removes the name now (mapped handles keep working)."""
        self._ch.unlink()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        # Pickled by name: the receiving process attaches (it never owns the name).
        return (Ring.attach, (self._name,))

    def __repr__(self):
        return "<shmlink.Ring %r capacity=%d%s>" % (self._name, self.capacity,
                                                   " closed" if self._closed else "")
