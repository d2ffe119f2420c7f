#!/usr/bin/python3
# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""Python IPC throughput: shmlink's Queue/Pipe/Ring against multiprocessing's.

usage: bench.py [--json] [--quick] [--sizes 64,4096,1048576] [--reps N] [--seconds S]

One producer process sends N messages of SIZE bytes (a bytes object each) as fast as the
API allows; the consumer (this process) receives them. Rate = (N - 1) messages over the
time from the first to the last receive, median of --reps runs. Systems (the names of
the project-wide benchmark schema):

  python-shmlink-queue   shmlink.Queue put/get (default slots; 1 MiB spills to a segment)
  python-shmlink-queue:bigslots  the same with slot_size > message (no spill)
  python-shmlink-pipe    shmlink.Pipe send_bytes/recv_bytes
  python-shmlink-pipe:view  the same, received in place (`with conn.recv_view()`: no copy)
  python-shmlink-ring    shmlink.Ring send_bytes/recv_bytes
  python-mp-queue        multiprocessing.Queue put/get
  python-mp-pipe         multiprocessing.Pipe send_bytes/recv_bytes
  python-mp-listener     multiprocessing.connection Listener/Client (Unix socket)

Round trips (pattern "rtt", 64 B): python-shmlink-pipe (default wait: spin 50 us, then
sleep), python-shmlink-pipe:sleep (shmlink.set_spin(0): sleep at once) and python-mp-pipe,
ping-pong with a child that echoes. --json prints JSON Lines (one record per system, size and pattern);
otherwise a table. --quick is
a smoke run (< 1 min). Figures depend heavily on machine load: run alone for real numbers.
"""
import argparse
import json
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import shmlink  # noqa: E402

CTX = mp.get_context("fork")
SIZES = [64, 4096, 1 << 20]


def _count(size, seconds, quick):
    # Enough messages to run about `seconds` at the slowest system's typical rate.
    rate = {64: 150_000, 4096: 80_000, 1 << 20: 600}.get(size, max(3, 1_000_000_000 // max(size, 1)))
    n = int(rate * seconds)
    if size >= 1 << 24:  # tens of MiB per message: a few messages make a repetition
        return max(5, n)
    return max(50 if quick else 200, n)


def _timed_receive(recv, n):
    recv()
    t0 = time.perf_counter()
    for _ in range(n - 1):
        recv()
    return time.perf_counter() - t0


# -- producers (run in a forked child) ----------------------------------------------------
def _produce(send, payload, n):
    for _ in range(n):
        send(payload)


def _queue_case(q, size, n):
    payload = os.urandom(size)
    p = CTX.Process(target=_produce, args=(q.put, payload, n))
    p.start()
    dt = _timed_receive(q.get, n)
    p.join()
    return dt


def run_shmlink_queue(size, n, slot_size=None):
    q = shmlink.Queue(1024, slot_size=slot_size or shmlink.queues.DEFAULT_SLOT_SIZE,
                      slots=1024 if size < 65536 else 16)
    dt = _queue_case(q, size, n)
    q.unlink()
    return dt


def run_mp_queue(size, n):
    return _queue_case(CTX.Queue(1024), size, n)


def _pipe_case(make_pipe, receiver, size, n):
    # receiver(read_end) -> the function _timed_receive calls once per message.
    r, w = make_pipe(duplex=False)
    payload = os.urandom(size)
    p = CTX.Process(target=_produce, args=(w.send_bytes, payload, n))
    p.start()
    w.close()
    dt = _timed_receive(receiver(r), n)
    p.join()
    r.close()
    return dt


def _bytes_recv(conn):
    return conn.recv_bytes


def _view_recv(conn):
    def recv():
        with conn.recv_view():
            pass
    return recv


def run_shmlink_pipe(size, n):
    return _pipe_case(shmlink.Pipe, _bytes_recv, size, n)


def run_shmlink_pipe_view(size, n):
    return _pipe_case(shmlink.Pipe, _view_recv, size, n)


def run_mp_pipe(size, n):
    return _pipe_case(CTX.Pipe, _bytes_recv, size, n)


def run_memcpy(size, n):
    """floor-memcpy:python: one core copying `size` bytes between two buffers (the bar
    for large messages, which a transport must move from one process to another)."""
    src, dst = os.urandom(size), bytearray(size)
    view = memoryview(dst)
    view[:] = src
    t0 = time.perf_counter()
    for _ in range(n - 1):
        view[:] = src
    return time.perf_counter() - t0


def _ring_producer(name, payload, n):
    ring = shmlink.Ring.attach(name)
    for _ in range(n):
        ring.send_bytes(payload)


def run_shmlink_ring(size, n):
    cap = 1 << 20
    while cap // 2 - 8 < size * 2:
        cap <<= 1
    name = "/shmlink-bench-%d-%s" % (os.getpid(), os.urandom(4).hex())
    ring = shmlink.Ring.create(name, cap)
    payload = os.urandom(size)
    p = CTX.Process(target=_ring_producer, args=(name, payload, n))
    p.start()
    dt = _timed_receive(ring.recv_bytes, n)
    p.join()
    ring.close()
    return dt


def _listener_client(address, payload, n):
    c = mpc.Client(address, authkey=b"bench")
    for _ in range(n):
        c.send_bytes(payload)
    c.close()


def run_mp_listener(size, n):
    d = tempfile.mkdtemp(prefix="shmlink-bench-")
    address = os.path.join(d, "sock")
    payload = os.urandom(size)
    with mpc.Listener(address, authkey=b"bench") as listener:
        p = CTX.Process(target=_listener_client, args=(address, payload, n))
        p.start()
        conn = listener.accept()
        dt = _timed_receive(conn.recv_bytes, n)
        p.join()
        conn.close()
    os.rmdir(d)
    return dt


# -- round trip (ping-pong of one message) -------------------------------------------------
def _echo(conn, n):
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def _rtt(a, p, size, n):
    payload = os.urandom(size)
    samples = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        a.send_bytes(payload)
        a.recv_bytes()
        if i >= n // 10:  # warm-up excluded
            samples.append(time.perf_counter_ns() - t0)
    p.join()
    samples.sort()
    return samples


def rtt_pipe(factory, size, n):
    a, b = factory()
    p = CTX.Process(target=_echo, args=(b, n))
    p.start()
    try:
        return _rtt(a, p, size, n)
    finally:
        a.close()
        b.close()


def rtt_pipe_sleep(size, n):
    shmlink.set_spin(0)  # the forked echo child inherits it
    try:
        return rtt_pipe(shmlink.Pipe, size, n)
    finally:
        shmlink.set_spin(50e-6)


RTT_SYSTEMS = [
    ("python-shmlink-pipe", lambda s, n: rtt_pipe(shmlink.Pipe, s, n)),
    ("python-shmlink-pipe:sleep", rtt_pipe_sleep),
    ("python-mp-pipe", lambda s, n: rtt_pipe(CTX.Pipe, s, n)),
]


def measure_rtt(system, fn, size, n):
    s = fn(size, n)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
    return {"system": system, "pattern": "rtt", "size": size, "p50_ns": pick(0.5),
            "p99_ns": pick(0.99), "p999_ns": pick(0.999), "reps": len(s),
            "note": "ping-pong with a child process echoing, %d round trips" % len(s)}


SYSTEMS = [
    ("python-shmlink-queue", run_shmlink_queue),
    ("python-shmlink-queue:bigslots", None),
    ("python-shmlink-pipe", run_shmlink_pipe),
    ("python-shmlink-pipe:view", run_shmlink_pipe_view),
    ("python-shmlink-ring", run_shmlink_ring),
    ("python-mp-queue", run_mp_queue),
    ("python-mp-pipe", run_mp_pipe),
    ("python-mp-listener", run_mp_listener),
    ("floor-memcpy:python", run_memcpy),
]


def measure(system, fn, size, n, reps):
    if fn is None:  # bigslots variant: only where the default would spill
        if size + 1 <= shmlink.queues.DEFAULT_SLOT_SIZE:
            return None
        fn = lambda s, k: run_shmlink_queue(s, k, slot_size=size + 64)  # noqa: E731
    rates = []
    for _ in range(reps):
        dt = fn(size, n)
        rates.append((n - 1) / dt)
    med = statistics.median(rates)
    return {
        "system": system, "pattern": "throughput", "size": size,
        "msgs_per_s": round(med, 1), "bytes_per_s": round(med * size, 1),
        "msgs_per_s_min": round(min(rates), 1), "msgs_per_s_max": round(max(rates), 1),
        "producers": 1, "consumers": 1, "reps": reps,
        "note": "one producer process -> this process, %d msgs/rep, Python %s" % (
            n, sys.version.split()[0]),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="JSON Lines output")
    ap.add_argument("--quick", action="store_true", help="smoke run (< 1 min)")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None,
                    help="target duration of one repetition of the slowest system")
    ap.add_argument("--systems", default=None, help="comma-separated subset")
    ap.add_argument("--no-rtt", action="store_true", help="skip the 64 B round-trip records")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    reps = args.reps or (1 if args.quick else 3)
    seconds = args.seconds or (0.1 if args.quick else 1.0)
    wanted = set(args.systems.split(",")) if args.systems else None
    records = []
    for size in sizes:
        n = _count(size, seconds, args.quick)
        for system, fn in SYSTEMS:
            if wanted and system not in wanted:
                continue
            try:
                rec = measure(system, fn, size, n, reps)
            except Exception as e:  # a system that cannot run is reported, not fatal
                rec = {"system": system, "pattern": "throughput", "size": size,
                       "error": "%s: %s" % (type(e).__name__, e)}
            if rec is None:
                continue
            records.append(rec)
            if args.json:
                print(json.dumps(rec), flush=True)
            else:
                if "error" in rec:
                    print("%-32s %8d  error: %s" % (system, size, rec["error"]), flush=True)
                else:
                    print("%-32s %8d  %12.0f msg/s  %10.1f MB/s" % (
                        system, size, rec["msgs_per_s"], rec["bytes_per_s"] / 1e6), flush=True)
    if not args.no_rtt:
        for system, fn in RTT_SYSTEMS:
            if wanted and system not in wanted:
                continue
            try:
                rec = measure_rtt(system, fn, 64, 2000 if args.quick else 20000)
            except Exception as e:
                rec = {"system": system, "pattern": "rtt", "size": 64,
                       "error": "%s: %s" % (type(e).__name__, e)}
            if args.json:
                print(json.dumps(rec), flush=True)
            elif "error" in rec:
                print("%-32s %8d  rtt error: %s" % (system, 64, rec["error"]), flush=True)
            else:
                print("%-32s %8d  rtt p50 %8.1f us  p99 %8.1f us" % (
                    system, 64, rec["p50_ns"] / 1e3, rec["p99_ns"] / 1e3), flush=True)
    if not args.json:
        by = {(r["system"], r["size"]): r for r in records if "error" not in r}
        for size in sizes:
            for ours, theirs, metric in (("python-shmlink-queue", "python-mp-queue", "msgs_per_s"),
                                         ("python-shmlink-pipe", "python-mp-pipe", "bytes_per_s"),
                                         ("python-shmlink-ring", "python-mp-pipe", "bytes_per_s"),
                                         ("python-shmlink-pipe:view", "floor-memcpy:python",
                                          "bytes_per_s")):
                a, b = by.get((ours, size)), by.get((theirs, size))
                if a and b:
                    print("size %8d: %s / %s = %.1fx (%s)" % (size, ours, theirs,
                                                            a[metric] / b[metric], metric))
    return 0


if __name__ == "__main__":
    sys.exit(main())
