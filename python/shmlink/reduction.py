# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""shmlink.reduction: multiprocessing.reduction, with send_handle/recv_handle that also
work on shmlink Pipe connections.

multiprocessing.reduction.send_handle(conn, fd, pid) wraps conn.fileno() in a socket and
sends the fd on it. A shmlink Pipe's fileno() is an epoll descriptor (readiness for the
shared-memory rings), not a socket, so the stdlib function cannot work on it without a
socket round trip per message on the data path. These functions have the same signature:
on a shmlink connection they call conn.send_handle()/recv_handle() (Pipe: the fd crosses
the Pipe's socketpair, in order with the messages; Listener/Client over a Unix socket: the
stdlib's bytes on the socket, plus a ring record on shared memory); on anything else they
are the stdlib's.
Under `import shmlink as multiprocessing`, multiprocessing.reduction is this module.
"""
from multiprocessing.reduction import *  # noqa: F401,F403
from multiprocessing import reduction as _std

from . import connection as _connection

__all__ = list(getattr(_std, "__all__", [])) + ["send_handle", "recv_handle"]

# Names without __all__ that programs use.
ForkingPickler = _std.ForkingPickler
register = _std.register
dump = _std.dump
DupFd = _std.DupFd
sendfds = _std.sendfds
recvfds = _std.recvfds
ACKNOWLEDGE = _std.ACKNOWLEDGE
HAVE_SEND_HANDLE = _std.HAVE_SEND_HANDLE


def send_handle(conn, handle, destination_pid):
    """Sends file descriptor `handle` over `conn` (destination_pid: unused on Unix)."""
    if isinstance(conn, _connection.Connection):
        return conn.send_handle(handle)
    return _std.send_handle(conn, handle, destination_pid)


def recv_handle(conn):
    """Receives a file descriptor sent with send_handle()."""
    if isinstance(conn, _connection.Connection):
        return conn.recv_handle()
    return _std.recv_handle(conn)
