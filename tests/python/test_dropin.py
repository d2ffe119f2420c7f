# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""`import shmlink as multiprocessing`: typical multiprocessing programs run twice, once with
the stdlib and once with shmlink imported as it, under fork and spawn; outputs must match.
Each program is written against `multiprocessing` and changed in its import lines only
(`import shmlink as multiprocessing`, `from shmlink[.connection] import ...`)."""
import os
import subprocess
import sys
import textwrap

import pytest

import shmlink

METHODS = ["fork", "spawn"]

PROGRAMS = {
    # The Pipe program of the seed article on Python IPC (sender and receiver processes).
    "seed_pipe": """
        from multiprocessing import Process, Pipe
        import multiprocessing

        def sender(conn):
            conn.send(['hello', 'from', 'sender'])
            conn.close()

        def receiver(conn):
            print(conn.recv(), flush=True)
            conn.close()

        if __name__ == '__main__':
            multiprocessing.set_start_method(METHOD)
            parent_conn, child_conn = Pipe()
            p1 = Process(target=sender, args=(child_conn,))
            p2 = Process(target=receiver, args=(parent_conn,))
            p1.start()
            p2.start()
            p1.join()
            p2.join()
    """,
    # The Listener/Client programs of the seed article on multiprocessing.connection, in
    # one program (the client runs in a child process; a free port instead of 6000), plus
    # the same session without an authkey on a Unix socket.
    "seed_listener_client": """
        import multiprocessing
        import os
        import tempfile
        from multiprocessing.connection import Client, Listener

        def client(address, authkey):
            conn = Client(address, authkey=authkey)
            conn.send(['a', 2.5, None, int, sum])
            conn.send_bytes(b'raw')
            conn.send('close')
            conn.close()

        def serve(address, authkey):
            listener = Listener(address, authkey=authkey)
            p = multiprocessing.Process(target=client, args=(listener.address, authkey))
            p.start()
            conn = listener.accept()
            print('connection accepted from', type(listener.last_accepted).__name__)
            while True:
                msg = conn.recv()
                print('got', msg)
                if msg == 'close':
                    conn.close()
                    break
                print('bytes', conn.recv_bytes())
            listener.close()
            p.join()
            print('client exit', p.exitcode)

        if __name__ == '__main__':
            multiprocessing.set_start_method(METHOD)
            serve(('localhost', 0), b'secret password')
            d = tempfile.mkdtemp()
            serve(os.path.join(d, 'sock'), None)
            os.rmdir(d)
    """,
    # Producer/consumer processes over a Queue, a JoinableQueue and a sentinel.
    "producer_consumer": """
        import multiprocessing

        def producer(q, n):
            for i in range(n):
                q.put({"i": i, "sq": i * i})
            q.put(None)

        def consumer(q, out, jq):
            total = 0
            while True:
                item = q.get()
                if item is None:
                    break
                total += item["sq"]
            out.put(total)
            for i in range(5):
                jq.put(i)

        if __name__ == "__main__":
            multiprocessing.set_start_method(METHOD)
            q, out, jq = multiprocessing.Queue(), multiprocessing.Queue(), multiprocessing.JoinableQueue()
            ps = [multiprocessing.Process(target=producer, args=(q, 500)),
                  multiprocessing.Process(target=consumer, args=(q, out, jq))]
            for p in ps:
                p.start()
            print("total", out.get())
            got = sorted(jq.get() for _ in range(5))
            for _ in got:
                jq.task_done()
            jq.join()
            for p in ps:
                p.join()
            print("jq", got, "exitcodes", [p.exitcode for p in ps])
            print("empty", q.empty(), out.qsize())
    """,
    # Pool.map whose workers write into a shared Array handed over by the initializer.
    "pool_shared_array": """
        import multiprocessing

        arr = None

        def init(a):
            global arr
            arr = a

        def square(i):
            with arr.get_lock():
                arr[i] = i * i
            return i * i

        if __name__ == "__main__":
            multiprocessing.set_start_method(METHOD)
            a = multiprocessing.Array("d", 16)
            with multiprocessing.Pool(2, initializer=init, initargs=(a,)) as pool:
                print(pool.map(square, range(16)))
            print(list(a[:]))
            print(multiprocessing.cpu_count() >= 1, multiprocessing.current_process().name)
    """,
    # A Manager's dict and lock next to a (shmlink) Queue and Value.
    "manager_next_to_queue": """
        import multiprocessing

        def work(d, lock, q, v, k):
            with lock:
                d[k] = k * 10
            with v.get_lock():
                v.value += k
            q.put(k)

        if __name__ == "__main__":
            multiprocessing.set_start_method(METHOD)
            with multiprocessing.Manager() as m:
                d, lock = m.dict(), m.Lock()
                q, v = multiprocessing.Queue(), multiprocessing.Value("i", 0)
                ps = [multiprocessing.Process(target=work, args=(d, lock, q, v, k))
                      for k in range(4)]
                for p in ps:
                    p.start()
                got = sorted(q.get() for _ in ps)
                for p in ps:
                    p.join()
                print(got, sorted(d.items()), v.value)
    """,
    # Pipe ping-pong with a child, Event and Lock from the same module, and a context.
    "pipe_event_context": """
        import multiprocessing

        def child(conn, ev):
            ev.wait()
            while True:
                m = conn.recv()
                if m is None:
                    break
                conn.send(m[::-1])
            conn.send_bytes(b"x" * 100000)
            conn.close()

        if __name__ == "__main__":
            ctx = multiprocessing.get_context(METHOD)
            a, b = ctx.Pipe()
            ev = ctx.Event()
            p = ctx.Process(target=child, args=(b, ev))
            p.start()
            b.close()
            ev.set()
            for w in ["abc", [1, 2, 3], (None, 1.5)]:
                a.send(w)
                print(a.recv())
            a.send(None)
            print(len(a.recv_bytes()))
            print(multiprocessing.connection.wait([a], timeout=10) == [a])
            try:
                a.recv()
            except EOFError:
                print("EOFError")
            p.join()
            print(p.exitcode, type(ctx.Lock()).__name__, ctx.get_start_method())
    """,
    # Value/Array/RawArray and a SimpleQueue.
    "shared_ctypes": """
        import ctypes
        import multiprocessing

        def work(n, arr, raw, sq):
            for _ in range(200):
                with n.get_lock():
                    n.value += 1
            for i in range(len(arr)):
                arr[i] = -i
            raw[0] = 42
            sq.put("done")

        if __name__ == "__main__":
            multiprocessing.set_start_method(METHOD)
            n = multiprocessing.Value(ctypes.c_long, 0)
            arr = multiprocessing.Array("i", range(6))
            raw = multiprocessing.RawArray("d", 3)
            sq = multiprocessing.SimpleQueue()
            ps = [multiprocessing.Process(target=work, args=(n, arr, raw, sq)) for _ in range(3)]
            for p in ps:
                p.start()
            print([sq.get() for _ in ps])
            for p in ps:
                p.join()
            print(n.value, arr[:], raw[:], sq.empty())
    """,
}


def _write(tmp_path, name, body, dropin, method):
    src = textwrap.dedent(body).replace("METHOD", repr(method))
    if dropin:
        src = src.replace("import multiprocessing\n", "import shmlink as multiprocessing\n", 1)
        src = src.replace("from multiprocessing.connection import",
                          "from shmlink.connection import")
        src = src.replace("from multiprocessing import", "from shmlink import")
    path = tmp_path / ("%s_%s.py" % (name, "shmlink" if dropin else "stdlib"))
    path.write_text(src)
    return str(path)


def _run(path, timeout=60):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run([sys.executable, path], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=os.path.dirname(path))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_program_matches_stdlib(tmp_path, name, method):
    stdlib = _run(_write(tmp_path, name, PROGRAMS[name], False, method))
    assert stdlib.returncode == 0, stdlib.stderr
    ours = _run(_write(tmp_path, name, PROGRAMS[name], True, method))
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == stdlib.stdout
    assert ours.stdout.strip()


def test_everything_multiprocessing_exports_is_there():
    import multiprocessing
    missing = [n for n in multiprocessing.__all__ if not hasattr(shmlink, n)]
    assert missing == []
    assert shmlink.__version__ == "0.2.0"
    # shmlink's own where it has them, the stdlib's elsewhere.
    assert shmlink.Queue.__module__ == "shmlink.queues"
    assert shmlink.Pipe.__module__ == "shmlink.connection"
    assert shmlink.Value.__module__ == "shmlink.sharedctypes"
    assert shmlink.Process is multiprocessing.Process
    assert shmlink.connection.Listener.__module__ == "shmlink.connection"
    assert callable(shmlink.connection.wait)
    assert shmlink.managers is multiprocessing.managers
    assert shmlink.reduction.ForkingPickler is multiprocessing.reduction.ForkingPickler


@pytest.mark.parametrize("method", METHODS + ["forkserver"])
def test_get_context_gives_shmlink_objects(method):
    ctx = shmlink.get_context(method)
    assert ctx.get_start_method() == method
    q = ctx.Queue()
    assert isinstance(q, shmlink.Queue)
    a, b = ctx.Pipe()
    assert isinstance(a, shmlink.Connection)
    a.close()
    b.close()
    assert isinstance(ctx.JoinableQueue(), shmlink.JoinableQueue)
    assert ctx.Value("i", 3).value == 3
    assert ctx.Array("i", [1, 2])[:] == [1, 2]
    assert ctx.Process is not None and ctx.get_context("fork").get_start_method() == "fork"


def _echo_through(q_in, q_out):
    q_out.put(q_in.get() * 2)


@pytest.mark.parametrize("method", METHODS + ["forkserver"])
def test_objects_reach_children_under_every_start_method(method):
    ctx = shmlink.get_context(method)
    q_in, q_out = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=_echo_through, args=(q_in, q_out))
    p.start()
    q_in.put(21)
    assert q_out.get(timeout=60) == 42
    p.join(60)
    assert p.exitcode == 0
