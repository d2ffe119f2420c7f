# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""authkey=None: no challenge, as in multiprocessing, against shmlink and stock Python peers;
shmlink's extra rules for unauthenticated peers (same uid on Unix sockets, loopback on TCP
unless allow_remote_unauthenticated=True)."""
import os
import random
import socket
import subprocess
import textwrap
import threading

import pytest

from shmlink.connection import AuthenticationError, Client, Listener
from conftest import reaped

STOCK_CLIENT = textwrap.dedent("""
    import sys
    from multiprocessing.connection import Client
    addr = sys.argv[1] if sys.argv[2] == "unix" else (sys.argv[2], int(sys.argv[1]))
    try:
        conn = Client(addr)
        conn.send(['a', 2.5, None])
        print(conn.recv(), flush=True)
    except (EOFError, ConnectionError) as e:
        print("refused", flush=True)
""")

STOCK_LISTENER = textwrap.dedent("""
    import sys
    from multiprocessing.connection import Listener
    listener = Listener(sys.argv[1])
    print("READY", flush=True)
    conn = listener.accept()
    while True:
        msg = conn.recv()
        if msg == 'close':
            break
        conn.send(msg)
""")


def _stock(code, *args):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return subprocess.Popen(["/usr/bin/python3", "-I", "-c", code] + list(args),
                            stdout=subprocess.PIPE, text=True, env=env)


def _abstract():
    return "\0shmlink-pytest-auth-%d-%d" % (os.getpid(), random.randrange(1 << 30))


@pytest.mark.parametrize("family", ["unix", "abstract", "tcp"])
def test_no_authkey_between_shmlink_peers(unix_path, family):
    address = {"unix": unix_path, "abstract": _abstract(), "tcp": ("127.0.0.1", 0)}[family]
    with Listener(address) as listener:
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("c", Client(listener.address)))
        t.start()
        s = listener.accept(timeout=20)
        t.join(20)
        c = out["c"]
        assert not c.is_shm and not s.is_shm  # no handshake: socket data path
        c.send({"x": 1})
        assert s.recv() == {"x": 1}
        s.send_bytes(b"y" * 100000)
        assert c.recv_bytes() == b"y" * 100000
        c.close()
        with pytest.raises(EOFError):
            s.recv()
        s.close()


@pytest.mark.parametrize("family", ["unix", "tcp"])
def test_stock_client_without_key_against_shmlink_listener(unix_path, family):
    address = unix_path if family == "unix" else ("127.0.0.1", 0)
    with Listener(address) as listener:
        arg = unix_path if family == "unix" else str(listener.address[1])
        with reaped(_stock(STOCK_CLIENT, arg, "unix" if family == "unix" else "127.0.0.1")) as p:
            conn = listener.accept(timeout=20)
            assert conn.recv() == ["a", 2.5, None]
            conn.send("reply")
            out, _ = p.communicate(timeout=20)
            assert out.strip() == "reply"
            conn.close()


def test_shmlink_client_without_key_against_stock_listener(unix_path):
    with reaped(_stock(STOCK_LISTENER, unix_path)) as p:
        assert p.stdout.readline().strip() == "READY"
        conn = Client(unix_path)
        for obj in (1, "two", b"three" * 1000):
            conn.send(obj)
            assert conn.recv() == obj
        conn.send("close")
        assert p.wait(timeout=20) == 0
        with pytest.raises(EOFError):
            conn.recv()
        conn.close()


def _can_become_nobody():
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(65534)
            os.setuid(65534)
        except OSError:
            os._exit(1)
        os._exit(0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_unauthenticated_unix_peer_of_another_uid_is_refused():
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as another uid")
    if not _can_become_nobody():
        pytest.skip("cannot switch to uid 65534 here (sandbox)")
    address = _abstract()  # no file permissions in the way: the uid check decides
    with Listener(address) as listener:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setgid(65534)
                os.setuid(65534)
                c = Client(address)
                c.recv()
            except (EOFError, OSError):
                code = 0
            finally:
                os._exit(code)
        with pytest.raises(PermissionError):
            listener.accept(timeout=20)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


def _non_loopback_ipv4():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.254.254.254", 1))  # no packet is sent: only picks the route
        ip = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if ip.startswith("127.") else ip


@pytest.mark.parametrize("allow", [False, True])
def test_unauthenticated_remote_tcp_peer_needs_opt_in(allow):
    ip = _non_loopback_ipv4()
    if ip is None:
        pytest.skip("no non-loopback IPv4 address on this host")
    with Listener(("0.0.0.0", 0), allow_remote_unauthenticated=allow) as listener:
        port = str(listener.address[1])
        with reaped(_stock(STOCK_CLIENT, port, ip)) as p:
            if not allow:
                with pytest.raises(PermissionError):
                    listener.accept(timeout=20)
                out, _ = p.communicate(timeout=20)
                assert out.strip() == "refused"
                return
            conn = listener.accept(timeout=20)
            assert conn.recv() == ["a", 2.5, None]
            conn.send("ok")
            out, _ = p.communicate(timeout=20)
            assert out.strip() == "ok"
            conn.close()


def test_keyed_and_unkeyed_ends_do_not_mix_silently(unix_path):
    # As multiprocessing: a keyed server's challenge is garbage to an unkeyed client and
    # an unkeyed client's first message fails the keyed server's handshake.
    with Listener(unix_path, authkey=b"key") as listener:
        done = threading.Event()

        def client():
            c = Client(unix_path)
            c.send("hi")
            done.wait(20)  # keep the socket open until the server has judged "hi"
            c.close()

        t = threading.Thread(target=lambda: _try(client))
        t.start()
        try:
            with pytest.raises(AuthenticationError):
                listener.accept(timeout=20)
        finally:
            done.set()
            t.join(20)


def _try(fn):
    try:
        fn()
    except Exception:
        pass
