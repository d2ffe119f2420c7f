"""shmlink.connection: multiprocessing.connection's API over shared memory.

Pipe() gives two Connection objects whose messages travel through SPSC rings in an
anonymous (memfd) shared-memory segment: no bytes cross a socket. A Connection has
multiprocessing's methods (send/recv of picklable objects, send_bytes/recv_bytes/
recv_bytes_into, poll, close, fileno, context manager) and works with
multiprocessing.connection.wait() and selectors.

fileno() readiness, and its cost: each direction has a doorbell (an eventfd plus a word in
the segment). The sender writes the eventfd only when the word goes 0 -> 1; the receiver
clears the word and drains the eventfd when it finds its ring empty. So a burst of
messages costs one eventfd write and one read, a strict ping-pong one of each per message
(about a microsecond of syscalls). A socketpair carries no data: its hang-up tells the
other end (and its fileno) that the last copy of this end was closed or its process died.
fileno() is an epoll descriptor watching both, created once per process.
"""
import os
import select
import socket

from multiprocessing import AuthenticationError, BufferTooShort  # noqa: F401 (re-export)
from multiprocessing import reduction as _reduction

from ._shmlink import _Channel

__all__ = ["Pipe", "Connection", "wait", "AuthenticationError", "BufferTooShort"]

#: Default ring capacity per direction. Messages up to capacity/2 - 8 bytes (4 MiB - 8).
DEFAULT_PIPE_CAPACITY = 8 << 20

_ForkingPickler = _reduction.ForkingPickler


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
        self._epoll = None
        self._epoll_pid = None
        self._closed = False

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
        self._ch.send_bytes(m, offset, size, None)

    def send(self, obj):
        """Send a (picklable) object."""
        self._check_closed()
        self._check_writable()
        self._ch.send_bytes(_ForkingPickler.dumps(obj), 0, None, None)

    # -- receiving -----------------------------------------------------------------------
    def recv_bytes(self, maxlength=None):
        """Receive bytes data as a bytes object."""
        self._check_closed()
        self._check_readable()
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        return self._ch.recv_bytes(maxlength, None)

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
        n, whole = self._ch.recv_bytes_into(m, offset, None)
        if whole is not None:
            raise BufferTooShort(whole)
        return n

    def recv(self):
        """Receive a (picklable) object."""
        self._check_closed()
        self._check_readable()
        with self._ch.recv_view(None, False) as mv:
            return _ForkingPickler.loads(mv)

    def recv_view(self, timeout=None):
        """shmlink extension: the next message in place (see shmlink.Ring.recv_view)."""
        self._check_closed()
        self._check_readable()
        return self._ch.recv_view(timeout, False)

    def poll(self, timeout=0.0):
        """Whether there is any input available to be read (or end of stream)."""
        self._check_closed()
        self._check_readable()
        return self._ch.poll(timeout)

    # -- fileno / lifetime ---------------------------------------------------------------
    def fileno(self):
        """A descriptor that becomes readable when recv() would not block."""
        self._check_closed()
        if not self.readable:
            return self._fds["sock"]
        if self._epoll is None or self._epoll_pid != os.getpid():
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
        self._ch.close()
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
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
