# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""shmlink Listener/Client: the seed's session, C++ peers, stock Python peers, wrong keys,
dead peers and Ctrl-C."""
import multiprocessing.connection as mpc
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import shmlink
from shmlink.connection import Client, Listener
from conftest import interrupted, reaped, runfile

KEY = b"secret password"


def _addresses(unix_path):
    return {
        "unix": unix_path,
        "abstract": "\0shmlink-pytest-%d-%d" % (os.getpid(), random.randrange(1 << 30)),
        "tcp": ("127.0.0.1", 0),
    }


def _pair(listener, address):
    """(client end, server end): the handshake needs both sides at once."""
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("c", Client(address, authkey=KEY)))
    t.start()
    s = listener.accept(timeout=20)
    t.join(20)
    return out["c"], s


# -- the seed's session (server: messages until 'close') -------------------------------
@pytest.mark.parametrize("family", ["unix", "abstract", "tcp"])
def test_seed_session_between_shmlink_peers(unix_path, family):
    address = _addresses(unix_path)[family]
    with Listener(address, authkey=KEY) as listener:
        real = listener.address

        def client():
            conn = Client(real, authkey=KEY)
            conn.send(["a", 2.5, None, int, sum])
            conn.send("close")
            conn.close()

        t = threading.Thread(target=client)
        t.start()
        conn = listener.accept(timeout=20)
        assert conn.is_shm
        if family == "tcp":
            assert listener.last_accepted[0] == "127.0.0.1"
        msgs = []
        while True:
            msg = conn.recv()
            msgs.append(msg)
            if msg == "close":
                conn.close()
                break
        t.join()
    assert msgs == [["a", 2.5, None, int, sum], "close"]


def test_bytes_api_and_poll(unix_path):
    with Listener(unix_path, authkey=KEY) as listener:
        c, s = _pair(listener, unix_path)
        with c, s:
            assert not s.poll()
            c.send_bytes(b"0123456789", 2, 3)
            assert s.poll(5)
            assert s.recv_bytes() == b"234"
            c.send_bytes(b"x" * 50)
            with pytest.raises(shmlink.BufferTooShort):
                s.recv_bytes_into(bytearray(10))
            c.send_bytes(b"y" * 50)
            with pytest.raises(OSError):
                s.recv_bytes(10)
            big = os.urandom(300000)
            c.send_bytes(big)
            assert s.recv_bytes() == big
            assert mpc.wait([s], 0.05) == []
            c.send(1)
            assert mpc.wait([s], 5) == [s]
            assert s.recv() == 1


def test_default_address_is_a_fresh_unix_path_removed_on_close():
    listener = Listener(authkey=KEY)
    path = listener.address
    assert isinstance(path, str) and os.path.exists(path)
    c, s = _pair(listener, path)
    c.send("hi")
    assert s.recv() == "hi"
    c.close()
    s.close()
    listener.close()
    assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))


def test_address_in_use_and_bad_authkeys(unix_path):
    with Listener(unix_path, authkey=KEY):
        with pytest.raises(OSError):
            Listener(unix_path, authkey=KEY)
    with pytest.raises(ValueError):
        Listener(unix_path, authkey=b"")
    with pytest.raises(TypeError):
        Client(unix_path, authkey="str key")


# -- C++ peers ---------------------------------------------------------------------------
def _start_cpp_listener(address_text):
    peer = runfile("tests/python/cpp_echo_peer")
    return subprocess.Popen([peer, "listen", address_text, KEY.decode()],
                            stdout=subprocess.PIPE, text=True)


def _reported_address(p, prefix):
    """The address a C++ listener printed after `prefix` on its first line, as Client
    takes it: a Unix path as is, "host:port" as a (host, port) tuple."""
    line = p.stdout.readline()
    assert line.startswith(prefix), line
    real = line[len(prefix):].strip()
    if real.startswith("/"):
        return real
    host, port = real.rsplit(":", 1)
    return (host, int(port))


@pytest.mark.parametrize("family", ["unix", "tcp"])
def test_python_client_against_cpp_echo_server(unix_path, family):
    text = unix_path if family == "unix" else "127.0.0.1:0"
    with reaped(_start_cpp_listener(text)) as p:
        conn = Client(_reported_address(p, "READY "), authkey=KEY)
        assert conn.is_shm
        for obj in (["a", 2.5, None], "x" * 10000, {"k": b"\0" * 100000}):
            conn.send(obj)
            assert conn.recv() == obj
        conn.send_bytes(b"raw")
        assert conn.recv_bytes() == b"raw"
        conn.close()
        assert p.wait(timeout=20) == 0


@pytest.mark.parametrize("family", ["unix", "tcp"])
def test_python_client_against_examples_echo_server(unix_path, family):
    server = runfile("examples/echo_server/echo_server")
    opt = ["--socket", unix_path] if family == "unix" else ["--address", "127.0.0.1:0"]
    with reaped(subprocess.Popen([server] + opt + ["--authkey", KEY.decode()],
                                 stdout=subprocess.PIPE, text=True)) as p:
        address = _reported_address(p, "listening on ")
        if family == "unix":
            assert address == unix_path
        conn = Client(address, authkey=KEY)
        assert conn.is_shm
        for obj in (["a", 2.5, None, int, sum], "x" * 5000, b"raw" * 1000):
            conn.send(obj)
            assert conn.recv() == obj
        conn.send_bytes(b"bytes path")
        assert conn.recv_bytes() == b"bytes path"
        conn.send("close")  # the seed's last message: the server exits cleanly
        conn.close()
        assert p.wait(timeout=20) == 0


def test_cpp_client_against_python_listener(unix_path):
    peer = runfile("tests/python/cpp_echo_peer")
    with Listener(unix_path, authkey=KEY) as listener:
        p = subprocess.Popen([peer, "connect", unix_path, KEY.decode(), "200"],
                             stdout=subprocess.PIPE, text=True)
        conn = listener.accept(timeout=20)
        n = 0
        try:
            while True:
                conn.send_bytes(conn.recv_bytes())
                n += 1
        except EOFError:
            pass
        out, _ = p.communicate(timeout=20)
        assert p.returncode == 0 and out.strip() == "OK shm=1"
        assert n == 200
        conn.close()


def test_wrong_authkey_against_cpp_server(unix_path):
    with reaped(_start_cpp_listener(unix_path)) as p:
        address = _reported_address(p, "READY ")
        with pytest.raises(shmlink.AuthenticationError):
            Client(address, authkey=b"wrong key")
        assert p.wait(timeout=20) == 3


# -- stock Python peers (Debian's python3, no shmlink on its path) -------------------------
STOCK_CLIENT = textwrap.dedent("""
    import sys
    from multiprocessing.connection import Client
    addr = sys.argv[1] if sys.argv[2] == "unix" else ("127.0.0.1", int(sys.argv[1]))
    conn = Client(addr, authkey=sys.argv[3].encode())
    conn.send(['a', 2.5, None, int, sum])
    conn.send_bytes(b"raw bytes")
    print(conn.recv(), flush=True)
    conn.send('close')
    conn.close()
""")

STOCK_LISTENER = textwrap.dedent("""
    import sys
    from multiprocessing.connection import Listener
    listener = Listener(sys.argv[1], authkey=sys.argv[2].encode())
    print("READY", flush=True)
    try:
        conn = listener.accept()
    except Exception as e:
        print(type(e).__name__, flush=True)
        sys.exit(3)
    while True:
        msg = conn.recv()
        if msg == 'close':
            conn.close()
            break
        conn.send(msg)
    listener.close()
""")


def _stock(code, *args):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return subprocess.Popen(["/usr/bin/python3", "-I", "-c", code] + list(args),
                            stdout=subprocess.PIPE, text=True, env=env)


@pytest.mark.parametrize("family", ["unix", "tcp"])
def test_stock_python_client_against_shmlink_listener(unix_path, family):
    address = unix_path if family == "unix" else ("127.0.0.1", 0)
    with Listener(address, authkey=KEY) as listener:
        arg = unix_path if family == "unix" else str(listener.address[1])
        p = _stock(STOCK_CLIENT, arg, family, KEY.decode())
        conn = listener.accept(timeout=20)
        assert not conn.is_shm  # stock peer: socket data path
        assert conn.recv() == ["a", 2.5, None, int, sum]
        assert conn.recv_bytes() == b"raw bytes"
        conn.send({"reply": 1})
        assert conn.recv() == "close"
        out, _ = p.communicate(timeout=20)
        assert p.returncode == 0 and out.strip() == "{'reply': 1}"
        conn.close()


def test_shmlink_client_against_stock_python_listener(unix_path):
    with reaped(_stock(STOCK_LISTENER, unix_path, KEY.decode())) as p:
        assert p.stdout.readline().strip() == "READY"
        conn = Client(unix_path, authkey=KEY)
        assert not conn.is_shm
        for obj in (1, "two", [3.0], b"four" * 1000):
            conn.send(obj)
            assert conn.recv() == obj
        conn.send("close")
        with pytest.raises(EOFError):
            conn.recv()
        conn.close()
        assert p.wait(timeout=20) == 0


def test_wrong_authkey_with_stock_peers(unix_path):
    with reaped(_stock(STOCK_LISTENER, unix_path, "right key")) as p:
        assert p.stdout.readline().strip() == "READY"
        with pytest.raises(shmlink.AuthenticationError):
            Client(unix_path, authkey=b"wrong key")
        out, _ = p.communicate(timeout=20)
        assert p.returncode == 3 and out.strip() == "AuthenticationError"
    with Listener(unix_path, authkey=b"right key") as listener:
        q = _stock(STOCK_CLIENT, unix_path, "unix", "wrong key")
        with pytest.raises(shmlink.AuthenticationError):
            listener.accept(timeout=20)
        q.communicate(timeout=20)
        assert q.returncode != 0


# -- dead peers and Ctrl-C -------------------------------------------------------------------
SHMLINK_CLIENT_THEN_SLEEP = textwrap.dedent("""
    import sys, time
    import shmlink
    conn = shmlink.Client(sys.argv[1], authkey=sys.argv[2].encode())
    conn.send("hello")
    time.sleep(60)
""")


def test_killed_peer_gives_eof_not_hang(unix_path):
    with Listener(unix_path, authkey=KEY) as listener:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        with reaped(subprocess.Popen([sys.executable, "-c", SHMLINK_CLIENT_THEN_SLEEP, unix_path,
                                      KEY.decode()], env=env)) as p:
            conn = listener.accept(timeout=20)
            assert conn.is_shm
            assert conn.recv() == "hello"
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)
            t0 = time.monotonic()
            with pytest.raises(EOFError):
                conn.recv()
            assert time.monotonic() - t0 < 5
            conn.close()


def test_sigint_interrupts_blocked_recv_and_accept(unix_path):
    with Listener(unix_path, authkey=KEY) as listener:
        with interrupted():
            listener.accept()
        c, s = _pair(listener, unix_path)
        with interrupted():
            s.recv()
        c.close()
        s.close()


def test_64_mib_messages_between_shmlink_peers(unix_path):
    with Listener(unix_path, authkey=KEY) as listener:
        c, s = _pair(listener, unix_path)
        big = os.urandom(64 << 20)
        t = threading.Thread(target=lambda: (c.send_bytes(big), c.send({"b": big})))
        t.start()
        assert s.recv_bytes() == big
        assert s.recv() == {"b": big}
        t.join()
        c.close()
        s.close()


# -- file descriptors ----------------------------------------------------------------------
STOCK_FD_CLIENT = textwrap.dedent("""
    import os, sys
    from multiprocessing.connection import Client
    from multiprocessing.reduction import send_handle, recv_handle
    conn = Client(sys.argv[1], authkey=sys.argv[2].encode())
    r, w = os.pipe()
    conn.send("before")
    send_handle(conn, w, os.getpid())
    os.close(w)
    conn.send("after")
    print(os.read(r, 5).decode(), flush=True)   # written through the passed fd
    fd = recv_handle(conn)                       # one from the shmlink side
    print(os.read(fd, 4).decode(), flush=True)
    conn.close()
""")


def test_handles_with_a_stock_python_peer(unix_path):
    from shmlink.reduction import recv_handle, send_handle
    with Listener(unix_path, authkey=KEY) as listener:
        with reaped(_stock(STOCK_FD_CLIENT, unix_path, KEY.decode())) as p:
            conn = listener.accept(timeout=20)
            assert not conn.is_shm
            assert conn.recv() == "before"
            fd = recv_handle(conn)
            os.write(fd, b"hello")
            os.close(fd)
            assert conn.recv() == "after"
            r, w = os.pipe()
            os.write(w, b"back")
            send_handle(conn, r, p.pid)
            os.close(r)
            os.close(w)
            out, _ = p.communicate(timeout=20)
            assert p.returncode == 0 and out.split() == ["hello", "back"]
            conn.close()


def test_handles_between_shmlink_peers_on_shm(unix_path):
    with Listener(unix_path, authkey=KEY) as listener:
        c, s = _pair(listener, unix_path)
        assert c.is_shm and s.is_shm
        r, w = os.pipe()
        c.send(1)
        c.send_handle(w)
        c.send(2)
        os.close(w)
        assert s.poll(5)
        with pytest.raises(RuntimeError):  # a message is next, not a handle
            s.recv_handle()
        assert s.recv() == 1
        with pytest.raises(OSError):  # a handle is next, not a message
            s.recv()
        fd = s.recv_handle()
        os.write(fd, b"z")
        os.close(fd)
        assert os.read(r, 1) == b"z" and s.recv() == 2
        os.close(r)
        c.close()
        s.close()
