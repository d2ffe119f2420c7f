# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""shmlink.connection: multiprocessing.connection's API over shared memory.

Pipe() gives two Connection objects whose messages travel through SPSC rings in an
anonymous (memfd) shared-memory segment: no bytes cross a socket. A Connection has
multiprocessing's methods (send/recv of picklable objects, send_bytes/recv_bytes/
recv_bytes_into, poll, close, fileno, context manager) and works with
multiprocessing.connection.wait() and selectors.

fileno() readiness, and its cost: each direction has a doorbell (an eventfd plus a word in
the segment), off until the receiving end's fileno() is first called (so a Pipe nobody
selects on makes no eventfd syscall). Then the sender writes the eventfd only when the word
goes 0 -> 1; the receiver clears the word and drains the eventfd when it finds its ring
empty. So a burst of
messages costs one eventfd write and one read, a strict ping-pong one of each per message
(about a microsecond of syscalls). A socketpair carries no data: its hang-up tells the
other end (and its fileno) that the last copy of this end was closed or its process died.
fileno() is an epoll descriptor watching both, created once per process.
"""
import fcntl
import itertools
import mmap
import os
import secrets
import select
import socket
import struct

from multiprocessing import AuthenticationError, BufferTooShort  # noqa: F401 (re-export)
from multiprocessing import reduction as _reduction

from . import _aio
from ._shmlink import _Channel, _LargeMessage, _Listener, _connect

__all__ = ["Pipe", "Connection", "Listener", "Client", "wait", "AuthenticationError",
           "BufferTooShort"]

#: Default ring capacity per direction. Messages up to capacity/2 - 72 bytes travel inline
#: through the ring; larger ones through a memfd segment (see _send_large).
DEFAULT_PIPE_CAPACITY = 8 << 20

_ForkingPickler = _reduction.ForkingPickler
_LARGE_HEADER = struct.Struct("=QQ")  # {id, size} beside a large message's fd
# Size fixed (a receiver never faults on a shrunk file); not write-sealed: the segment is
# reused once the receiver gives it back.
_F_SEALS = (getattr(fcntl, "F_SEAL_SEAL", 1) | getattr(fcntl, "F_SEAL_SHRINK", 2) |
            getattr(fcntl, "F_SEAL_GROW", 4))
_LARGE_SEGMENT_HEADER = 64  # u32 in-use word, padding; then the message
_LARGE_POOL = 4  # segments a sending end keeps for reuse
# Ids of this process's large messages: random start, so a receiver never confuses the fd of
# a sender that died mid-send with a later sender's.
_large_ids = itertools.count(secrets.randbits(62))
_PWRITE_MAX = 1 << 30
_HANDLE = (1 << 64) - 1  # the size field of a marker that announces a passed fd


def _dup_all(fds):
    return [os.dup(f) for f in fds]


class Connection:
    """One end of a shmlink Pipe (see the module docstring)."""

    def __init__(self, seg_fd, rx_index, tx_index, rx_efd, tx_efd, sock_fd):
        # Takes ownership of every fd passed (any may be -1).
        self._fds = {"seg": seg_fd, "rx_efd": rx_efd, "tx_efd": tx_efd, "sock": sock_fd}
        self._rx_index = rx_index
        self._tx_index = tx_index
        self._ch = _Channel.open_pipe(seg_fd, rx_index, tx_index, rx_efd, tx_efd, sock_fd)
        self._inline_max = self._ch.max_message_size  # larger: _send_large
        self._epoll = None
        self._epoll_pid = None
        self._closed = False
        # Open and of the right direction: the one test the common calls' fast path makes.
        self._can_send = tx_index >= 0
        self._can_recv = rx_index >= 0

    # -- state ---------------------------------------------------------------------------
    @property
    def closed(self):
        return self._closed

    @property
    def readable(self):
        return self._rx_index >= 0

    @property
    def writable(self):
        return self._tx_index >= 0

    def _check_closed(self):
        if self._closed:
            raise OSError("handle is closed")

    def _check_readable(self):
        if not self.readable:
            raise OSError("connection is write-only")

    def _check_writable(self):
        if not self.writable:
            raise OSError("connection is read-only")

    @property
    def max_message_size(self):
        return self._ch.max_message_size

    # -- sending -------------------------------------------------------------------------
    def send_bytes(self, buf, offset=0, size=None):
        """Send the bytes data from a bytes-like object."""
        if (self._can_send and type(buf) is bytes and offset == 0 and size is None
                and len(buf) <= self._inline_max):
            # The common call, without the general path's memoryview and checks.
            return self._ch.send_bytes(buf, 0, None, None)
        self._check_closed()
        self._check_writable()
        m = memoryview(buf)
        if m.itemsize > 1:
            m = m.cast("B")
        n = m.nbytes
        if offset < 0:
            raise ValueError("offset is negative")
        if n < offset:
            raise ValueError("buffer length < offset")
        if size is None:
            size = n - offset
        elif size < 0:
            raise ValueError("size is negative")
        elif offset + size > n:
            raise ValueError("buffer length < offset + size")
        if size > self._inline_max:
            return self._send_large([m[offset:offset + size]])
        self._ch.send_bytes(m, offset, size, None)

    def send(self, obj):
        """Send a (picklable) object."""
        if not self._can_send:
            self._check_closed()
            self._check_writable()
        data = _ForkingPickler.dumps(obj)
        if len(data) > self._inline_max:
            return self._send_large([memoryview(data)])
        self._ch.send_bytes(data, 0, None, None)

    # -- large messages: a memfd segment, reused once the receiver is done -------------
    def _send_large(self, parts):
        """One copy in: the parts (bytes-like) go into a memfd segment (64-byte header,
        then the message), whose fd crosses the socketpair before the ring's marker
        record announces it (so the receiver finds the fd when it meets the marker, in
        order with every other message). The header's in-use word is set here and
        cleared by the receiver when its Message is given back; a free segment of
        sufficient size is reused (its pages are already there), else a new one is made."""
        views = [memoryview(p).cast("B") for p in parts]
        n = sum(v.nbytes for v in views)
        seg = self._large_segment(n)
        fd, hdr = seg[0], seg[2]
        hdr[0:4] = b"\x01\x00\x00\x00"  # in use until the receiver gives it back
        at = _LARGE_SEGMENT_HEADER
        for v in views:  # pwrite releases the GIL
            done = 0
            while done < v.nbytes:
                k = os.pwrite(fd, v[done:done + _PWRITE_MAX], at)
                done += k
                at += k
        msg_id = next(_large_ids)
        socket.send_fds(self._socket(), [_LARGE_HEADER.pack(msg_id, n)], [fd])
        self._ch.send_large_marker(msg_id, n)

    def _large_segment(self, n):
        """(fd, capacity, header mmap) of a free segment for n bytes: one of the last few
        this end made (a streaming sender runs a message or two ahead of its receiver),
        or a new one."""
        pool = getattr(self, "_large_pool", None)
        if pool is None or self._large_pid != os.getpid():
            pool = self._large_pool = []  # (inherited across fork: the parent's)
            self._large_pid = os.getpid()
        for seg in pool:
            if seg[1] >= n and seg[2][0:4] == b"\0\0\0\0":
                return seg
        fd = os.memfd_create("shmlink-msg", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, _LARGE_SEGMENT_HEADER + n)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _F_SEALS)  # size fixed: no SIGBUS
            hdr = mmap.mmap(fd, _LARGE_SEGMENT_HEADER)
        except BaseException:
            os.close(fd)
            raise
        if len(pool) >= _LARGE_POOL:
            old = pool.pop(0)  # the receiver keeps its own mapping if it still reads it
            old[2].close()
            os.close(old[0])
        pool.append((fd, n, hdr))
        return pool[-1]

    def _drop_large_segment(self):
        pool = getattr(self, "_large_pool", None)
        self._large_pool = None
        if pool and self._large_pid == os.getpid():
            for fd, _, hdr in pool:
                hdr.close()
                os.close(fd)

    def _socket(self):
        s = getattr(self, "_sock_obj", None)
        if s is None or self._sock_pid != os.getpid():
            s = socket.socket(fileno=os.dup(self._fds["sock"]))
            s.setblocking(True)
            self._sock_obj, self._sock_pid = s, os.getpid()
        return s

    def _take_fd(self, e):
        """The fd (now the caller's) announced by the marker behind _LargeMessage `e`."""
        msg_id, n = e.args
        sock = self._socket()
        while True:
            data, fds, _, _ = socket.recv_fds(sock, _LARGE_HEADER.size, 1)
            if not data:
                raise EOFError("peer closed while sending a descriptor")
            if len(data) == _LARGE_HEADER.size and len(fds) == 1 and \
                    _LARGE_HEADER.unpack(data) == (msg_id, n):
                return fds[0]
            for fd in fds:  # the fd of a sender that died before committing its marker
                os.close(fd)

    def _recv_large(self, e, populate=True):
        """The Message (mapping the memfd, no copy) of the large message announced by the
        _LargeMessage `e`; populate=False for a view (pages fault in when read)."""
        fd = self._take_fd(e)
        try:
            if e.args[1] == _HANDLE:
                raise RuntimeError("a file descriptor was sent here: use recv_handle()")
            return _Channel.map_message(fd, e.args[1], populate)
        finally:
            os.close(fd)

    # -- file descriptors ------------------------------------------------------------------
    def send_handle(self, handle):
        """Sends a duplicate of file descriptor `handle` (in order with the messages) for
        the peer's recv_handle(); multiprocessing.reduction.send_handle's job on a Pipe
        (see shmlink.reduction)."""
        self._check_closed()
        self._check_writable()
        msg_id = next(_large_ids)
        socket.send_fds(self._socket(), [_LARGE_HEADER.pack(msg_id, _HANDLE)], [handle])
        self._ch.send_large_marker(msg_id, _HANDLE)

    def recv_handle(self):
        """Receives a file descriptor sent with send_handle() (a new fd, the caller's).
        RuntimeError if the next message is not one (the message is consumed), as
        multiprocessing's recv_handle on unexpected data."""
        self._check_closed()
        self._check_readable()
        try:
            self._ch.recv_bytes(None, None)
        except _LargeMessage as e:
            if e.args[1] == _HANDLE:
                return self._take_fd(e)
            os.close(self._take_fd(e))
        raise RuntimeError("Invalid data received (not a file descriptor)")

    # -- receiving -----------------------------------------------------------------------
    def recv_bytes(self, maxlength=None):
        """Receive bytes data as a bytes object."""
        if not self._can_recv:
            self._check_closed()
            self._check_readable()
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        try:
            return self._ch.recv_bytes(maxlength, None)
        except _LargeMessage as e:
            msg = self._recv_large(e)
        with msg:
            if maxlength is not None and len(msg) > maxlength:
                raise OSError("bad message length")
            return msg.tobytes()

    def recv_bytes_into(self, buf, offset=0):
        """Receive bytes data into a writeable bytes-like object; returns the length.
        Raises BufferTooShort (holding the message) if it does not fit."""
        self._check_closed()
        self._check_readable()
        m = memoryview(buf)
        if m.itemsize > 1:
            m = m.cast("B")
        if offset < 0 or offset > m.nbytes:
            raise ValueError("offset out of bounds" if offset >= 0 else "negative offset")
        try:
            n, whole = self._ch.recv_bytes_into(m, offset, None)
        except _LargeMessage as e:
            with self._recv_large(e) as body:
                n = body.nbytes
                if n > m.nbytes - offset:
                    raise BufferTooShort(body.tobytes()) from None
                m[offset:offset + n] = body
                return n
        if whole is not None:
            raise BufferTooShort(whole)
        return n

    def recv(self):
        """Receive a (picklable) object."""
        if not self._can_recv:
            self._check_closed()
            self._check_readable()
        try:
            return self._ch.recv_decode(_ForkingPickler.loads, None)
        except _LargeMessage as e:
            msg = self._recv_large(e)
        with msg as body:
            return _ForkingPickler.loads(body)

    def recv_view(self, timeout=None):
        """shmlink extension: the next message in place (see shmlink.Ring.recv_view): in
        the ring, or for a large message in its own read-only mapping; no copy either way."""
        self._check_closed()
        self._check_readable()
        try:
            return self._ch.recv_view(timeout, False)
        except _LargeMessage as e:
            return self._recv_large(e, False)

    def recv_array(self, timeout=None):
        """shmlink extension: a NumPy array sent with send_array(), without a copy (its
        data lies in the ring, or in a large message's own mapping; read-only). As with
        Ring.recv_array, an array kept alive keeps its ring space."""
        from ._ring import _array_from_message
        self._check_closed()
        self._check_readable()
        try:
            msg = self._ch.recv_view(timeout, True)
        except _LargeMessage as e:
            msg = self._recv_large(e, False)
        return _array_from_message(msg)

    def send_array(self, arr):
        """shmlink extension: sends a NumPy array for recv_array() (one copy)."""
        from ._ring import _array_parts
        self._check_closed()
        self._check_writable()
        parts = _array_parts(arr)
        if sum(memoryview(p).nbytes for p in parts) > self._inline_max:
            return self._send_large(parts)
        self._ch.send_parts(parts, None)

    def poll(self, timeout=0.0):
        """Whether there is any input available to be read (or end of stream)."""
        self._check_closed()
        self._check_readable()
        return self._ch.poll(timeout)

    # -- asyncio -------------------------------------------------------------------------
    async def _readable(self):
        """Returns once a receive would not block (waits on fileno() in the event loop)."""
        await _aio.wait_readable(self)

    async def recv_async(self):
        """shmlink extension: `await conn.recv_async()`, recv() for asyncio."""
        await self._readable()
        return self.recv()

    async def recv_bytes_async(self, maxlength=None):
        """shmlink extension: recv_bytes() for asyncio."""
        await self._readable()
        return self.recv_bytes(maxlength)

    # -- fileno / lifetime ---------------------------------------------------------------
    def fileno(self):
        """A descriptor that becomes readable when recv() would not block."""
        self._check_closed()
        if not self.readable:
            return self._fds["sock"]
        if self._epoll is None or self._epoll_pid != os.getpid():
            self._ch.enable_bell()
            ep = select.epoll()
            ep.register(self._fds["rx_efd"], select.EPOLLIN)
            ep.register(self._fds["sock"], select.EPOLLIN | select.EPOLLRDHUP)
            self._epoll, self._epoll_pid = ep, os.getpid()
        return self._epoll.fileno()

    def close(self):
        """Close the connection. A peer's recv then raises EOFError once it has read
        everything sent (after the last copy of this end is closed)."""
        if self._closed:
            return
        self._closed = True
        self._can_send = self._can_recv = False
        self._ch.close()
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        self._drop_large_segment()
        s = getattr(self, "_sock_obj", None)
        if s is not None:
            self._sock_obj = None
            if self._sock_pid == os.getpid():
                s.close()
            else:
                s.detach()  # the parent's fd number: not ours to close
        for k, fd in self._fds.items():
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._fds[k] = -1

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()

    def __reduce__(self):
        # As multiprocessing does for its connections: descriptors travel with DupFd
        # (inherited by a spawned child, or sent over the resource sharer's socket).
        self._check_closed()
        dfs = tuple(_reduction.DupFd(fd) if fd >= 0 else None for fd in
                    (self._fds["seg"], self._fds["rx_efd"], self._fds["tx_efd"],
                     self._fds["sock"]))
        return (_rebuild_connection, dfs + (self._rx_index, self._tx_index))

    def __repr__(self):
        return "<shmlink.connection.Connection %s%s>" % (
            "r" if self.readable else "", "w" if self.writable else "") + (
            " closed" if self._closed else "")


class SocketConnection(Connection):
    """A Listener/Client connection (transport/connection.h): multiprocessing's wire
    format and handshake, so stock Python peers work; between shmlink peers the messages
    travel through shared-memory rings and the socket only carries EOF and doorbells.

    Bound to the process that made it (not picklable, unusable in a forked child).
    fileno(): usable with multiprocessing.connection.wait() (each call arms a one-shot
    doorbell); with a long-lived selectors registration, call poll() after each wake-up
    and re-register (or use wait()) since the doorbell is one-shot.
    """

    def __init__(self, impl):
        self._ch = impl
        self._inline_max = impl.max_message_size
        self._rx_index = 0
        self._tx_index = 0
        self._fds = {}
        self._epoll = None
        self._closed = False
        self._can_send = self._can_recv = True
        self._armed = False
        self._ready_fd = -1

    def _disarm(self):
        if self._armed:
            self._armed = False
            self._ch.disarm_fileno()

    def recv_bytes(self, maxlength=None):
        self._check_closed()
        self._disarm()
        return super().recv_bytes(maxlength)

    def recv_bytes_into(self, buf, offset=0):
        self._check_closed()
        self._disarm()
        return super().recv_bytes_into(buf, offset)

    def recv(self):
        self._check_closed()
        self._disarm()
        return super().recv()

    def recv_view(self, timeout=None):
        raise NotImplementedError("recv_view is available on Ring and Pipe connections")

    def recv_array(self, timeout=None):
        raise NotImplementedError("recv_array is available on Ring and Pipe connections")

    def send_array(self, arr):
        raise NotImplementedError("send_array is available on Ring and Pipe connections")

    def _send_large(self, parts):
        raise ValueError("message exceeds the connection's maximum of %d bytes"
                         % self._ch.max_message_size)

    def send_handle(self, handle):
        """Sends a duplicate of fd `handle` (Unix sockets only), in order with the
        messages; wire-compatible with multiprocessing.reduction.send_handle, so a stock
        Python peer's recv_handle takes it."""
        self._check_closed()
        self._ch.send_handle(handle)

    def recv_handle(self):
        """Receives a descriptor sent with send_handle() or Python's send_handle (a new
        fd, the caller's). RuntimeError if the next item is not one."""
        self._check_closed()
        self._disarm()
        return self._ch.recv_handle(None)

    def poll(self, timeout=0.0):
        self._check_closed()
        self._disarm()
        return self._ch.poll(timeout)

    @property
    def is_shm(self):
        """True if messages travel through shared memory (both peers are shmlink)."""
        return self._ch.is_shm

    def fileno(self):
        self._check_closed()
        if self._ch.arm_fileno():
            # A message is already waiting: hand out a descriptor that is readable now.
            if self._ready_fd < 0:
                self._ready_fd = os.eventfd(1, os.EFD_CLOEXEC)
            return self._ready_fd
        self._armed = True
        return self._ch.fileno()

    def close(self):
        if self._closed:
            return
        self._closed = True
        self._can_send = self._can_recv = False
        self._ch.close()
        if self._ready_fd >= 0:
            os.close(self._ready_fd)
            self._ready_fd = -1

    def __reduce__(self):
        raise TypeError("shmlink socket connections are bound to their process")

    def __repr__(self):
        return "<shmlink.connection.SocketConnection %s%s>" % (
            "shm" if not self._closed and self._ch.is_shm else "socket",
            " closed" if self._closed else "")


def _address_text(address):
    """multiprocessing address -> transport address string."""
    if isinstance(address, tuple):
        host, port = address[0], int(address[1])
        if ":" in host:
            host = "[%s]" % host
        return "%s:%d" % (host, port)
    if isinstance(address, bytes):
        address = os.fsdecode(address)
    if not isinstance(address, str) or not address:
        raise ValueError("address must be a path, an abstract name ('\\0name') or "
                         "a (host, port) tuple")
    if address.startswith("\0"):
        return address
    return address if "/" in address else "./" + address


def _authkey(authkey):
    """(key, authenticate) for the extension: None means no challenge, as in
    multiprocessing."""
    if authkey is None:
        return b"", False
    if not isinstance(authkey, bytes):
        raise TypeError("authkey should be a byte string")
    if not authkey:
        raise ValueError("shmlink refuses an empty authkey (use authkey=None for no "
                         "authentication)")
    return authkey, True


class Listener:
    """multiprocessing.connection.Listener over transport/connection.h.

    Listener(address=None, family=None, backlog=1, authkey=None, *, shm=True,
    ring_capacity=None, legacy_auth=False, allow_remote_unauthenticated=False).
    address: a Unix path, an abstract name ('\0name') or a (host, port) tuple (port 0:
    any free port, see .address); None picks a fresh Unix path. family is accepted for
    compatibility and inferred. shm=False behaves exactly like stock Python (no
    shared-memory upgrade).

    authkey=None: no challenge-response, as in multiprocessing; then shmlink admits only
    peers of this process's uid (kernel peer credentials) on Unix sockets and, on TCP,
    only peers on a loopback address: accept() raises PermissionError for others unless
    allow_remote_unauthenticated=True. Unauthenticated connections use the socket data
    path (the shared-memory upgrade is negotiated inside the handshake).
    """

    def __init__(self, address=None, family=None, backlog=1, authkey=None, *, shm=True,
                 ring_capacity=None, legacy_auth=False, allow_remote_unauthenticated=False):
        self._tempdir = None
        if address is None:
            import tempfile
            self._tempdir = tempfile.mkdtemp(prefix="shmlink-")
            address = os.path.join(self._tempdir, "listener")
        try:
            key, authenticate = _authkey(authkey)
            self._impl = _Listener.create(_address_text(address), key, shm,
                                          int(ring_capacity or 0), int(backlog), legacy_auth,
                                          authenticate, bool(allow_remote_unauthenticated))
        except BaseException:
            self._remove_tempdir()
            raise
        self._closed = False

    def _remove_tempdir(self):
        if self._tempdir is not None:
            try:
                os.rmdir(self._tempdir)
            except OSError:
                pass
            self._tempdir = None

    def accept(self, timeout=None):
        """Accepts and authenticates one client. shmlink extension: timeout (seconds)
        raises TimeoutError. A client with the wrong key gives AuthenticationError."""
        if self._closed:
            raise OSError("listener is closed")
        return SocketConnection(self._impl.accept(timeout))

    def close(self):
        """Stops listening and removes the socket file (and the directory made for an
        address=None listener)."""
        if not self._closed:
            self._closed = True
            self._impl.close()
            self._remove_tempdir()

    @property
    def address(self):
        return self._impl.address

    @property
    def last_accepted(self):
        """The peer address of the last accepted connection: (host, port) on TCP, ''
        for Unix sockets (as multiprocessing reports for unbound clients)."""
        a = self._impl.last_accepted
        return "" if a is None else a

    def fileno(self):
        return self._impl.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def Client(address, family=None, authkey=None, *, shm=True, legacy_auth=False):
    """multiprocessing.connection.Client over transport/connection.h (see Listener).
    authkey=None: no authentication, as in multiprocessing."""
    key, authenticate = _authkey(authkey)
    return SocketConnection(_connect(_address_text(address), key, shm, legacy_auth,
                                     authenticate))


def _rebuild_connection(seg, rx_efd, tx_efd, sock, rx_index, tx_index):
    fds = [d.detach() if d is not None else -1 for d in (seg, rx_efd, tx_efd, sock)]
    return Connection(fds[0], rx_index, tx_index, fds[1], fds[2], fds[3])


def Pipe(duplex=True, *, capacity=DEFAULT_PIPE_CAPACITY):
    """Returns a pair (conn1, conn2) of Connection objects, like multiprocessing.Pipe.

    duplex=False: conn1 can only receive and conn2 only send. capacity: ring bytes per
    direction (power of two); the largest message is capacity/2 - 8 bytes.
    """
    seg = _Channel.create_pipe_segment(int(capacity))
    flags = os.EFD_CLOEXEC | os.EFD_NONBLOCK
    e0 = os.eventfd(0, flags)
    e1 = os.eventfd(0, flags) if duplex else -1
    s0, s1 = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    s0f, s1f = s0.detach(), s1.detach()
    try:
        if duplex:
            a = Connection(os.dup(seg), 0, 1, os.dup(e0), os.dup(e1), s0f)
            b = Connection(os.dup(seg), 1, 0, os.dup(e1), os.dup(e0), s1f)
        else:
            a = Connection(os.dup(seg), 0, -1, os.dup(e0), -1, s0f)
            b = Connection(os.dup(seg), -1, 0, -1, os.dup(e0), s1f)
    finally:
        for fd in (seg, e0, e1):
            if fd >= 0:
                os.close(fd)
    return a, b


def wait(object_list, timeout=None):
    """multiprocessing.connection.wait, accepting shmlink connections too."""
    from multiprocessing.connection import wait as _wait
    return _wait(object_list, timeout)
