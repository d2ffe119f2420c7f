#!/usr/bin/python3
# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""Stock multiprocessing baselines for //bench:compare (python-mp-pipe, -queue, -listener).

Same layout and protocol as the C++ peer harness (bench/peer_harness.h): two processes
pinned to two cores (os.sched_setaffinity); throughput = B sends fixed-size messages until
A, after a warm-up, has counted for --seconds and sets a stop flag, then B sends an end tag;
RTT = A sends, B echoes a message of the same size, A times each round trip. The first
8 bytes of every message are a tag (sequence number) the receiver checks. Prints one JSON
line per case (the schema of bench/bench_record.h) on stdout, progress on stderr.

  pipe      multiprocessing.Pipe(): send_bytes()/recv_bytes() (one pipe(2) or socketpair)
  queue     multiprocessing.Queue(): put(bytes)/get() (pickled by a feeder thread, a pipe
            and a lock underneath)
  listener  multiprocessing.connection.Listener/Client over an AF_UNIX socket:
            send_bytes()/recv_bytes()
"""
import argparse
import json
import multiprocessing as mp
import os
import statistics
import struct
import sys
import tempfile
import time
from multiprocessing.connection import Client, Listener

END = (1 << 64) - 1
TAG = struct.Struct("<Q")
NOTES = {
    "python-mp-pipe": "multiprocessing.Pipe send_bytes/recv_bytes",
    "python-mp-queue": "multiprocessing.Queue put/get of bytes (pickled, feeder thread)",
    "python-mp-listener": "multiprocessing.connection Listener/Client AF_UNIX send_bytes/recv_bytes",
}


def pin(cpu):
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        pass


def make_channel(kind, rtt, size, tmpdir):
    """Returns (setup_a, setup_b, cleanup): each setup returns (send(bytes), recv()->bytes)."""
    if kind == "pipe":
        if rtt:
            a, b = mp.Pipe(duplex=True)
            return (lambda: (a.send_bytes, a.recv_bytes)), (lambda: (b.send_bytes, b.recv_bytes)), [a, b]
        r, w = mp.Pipe(duplex=False)
        return (lambda: (None, r.recv_bytes)), (lambda: (w.send_bytes, None)), [r, w]
    if kind == "queue":
        # Bounded like the other queues (Boost: max(8, min(1024, 8 MiB / size))): an
        # unbounded Queue lets a fast producer buffer gigabytes in its feeder thread.
        depth = max(8, min(1024, (8 << 20) // size))
        ba = mp.Queue(depth)
        ab = mp.Queue(depth) if rtt else None
        a = lambda: ((ab.put if ab else None), ba.get)
        b = lambda: (ba.put, (ab.get if ab else None))
        return a, b, []
    if kind == "listener":
        path = os.path.join(tmpdir, "l%d" % time.monotonic_ns())
        listener = Listener(path, family="AF_UNIX")

        def a():
            conn = listener.accept()
            return conn.send_bytes, conn.recv_bytes

        def b():
            conn = Client(path, family="AF_UNIX")
            return conn.send_bytes, conn.recv_bytes

        return a, b, [listener]
    raise ValueError(kind)


def arrive(setup, ctl, cpu):
    """Pins this side, builds its end of the channel, waits until the other side has too."""
    pin(cpu)
    send, recv = setup()
    with ctl["ready"].get_lock():
        ctl["ready"].value += 1
    while ctl["ready"].value < 2:
        pass
    return send, recv


def side_a(rtt, size, reps, warm, secs, setup, ctl, res, cpu):
    send, recv = arrive(setup, ctl, cpu)
    body = bytes(size - 8)
    figs = []
    try:
        if not rtt:
            for r in range(1, reps + 1):
                ctl["go"].value = r
                expect = 0
                t_start = time.perf_counter()
                while time.perf_counter() - t_start < warm:
                    tag = TAG.unpack_from(recv())[0]
                    assert tag == expect, "lost or reordered message"
                    expect += 1
                count = 0
                t0 = time.perf_counter()
                while True:
                    tag = TAG.unpack_from(recv())[0]
                    assert tag == expect, "lost or reordered message"
                    expect += 1
                    count += 1
                    t1 = time.perf_counter()
                    if t1 - t0 >= secs:
                        break
                figs.append([count / (t1 - t0)])
                ctl["stop"].value = r
                while TAG.unpack_from(recv())[0] != END:
                    pass
        else:
            k = 0
            for r in range(1, reps + 1):
                t_start = time.perf_counter()
                while time.perf_counter() - t_start < warm:
                    send(TAG.pack(k) + body)
                    assert TAG.unpack_from(recv())[0] == k
                    k += 1
                samples = []
                t_end = time.perf_counter() + secs
                pc = time.perf_counter_ns
                while True:
                    s = pc()
                    send(TAG.pack(k) + body)
                    tag = TAG.unpack_from(recv())[0]
                    e = pc()
                    assert tag == k, "echo mismatch"
                    k += 1
                    samples.append(e - s)
                    if e / 1e9 >= t_end:
                        break
                samples.sort()
                n = len(samples)
                pick = lambda q: float(samples[min(n - 1, int(q * n))])
                figs.append([pick(0.5), pick(0.99), pick(0.999)])
                send(TAG.pack(END) + body)
        res.send(("ok", figs))
    except Exception as e:  # reported as an error record
        res.send(("error", "%s: %s" % (type(e).__name__, e)))


def side_b(rtt, size, reps, setup, ctl, cpu):
    send, recv = arrive(setup, ctl, cpu)
    body = bytes(size - 8)
    pack = TAG.pack
    if not rtt:
        for r in range(1, reps + 1):
            while ctl["go"].value < r:
                pass
            seq = 0
            stop = ctl["stop"]
            while stop.value < r:
                send(pack(seq) + body)
                seq += 1
            send(pack(END) + body)
    else:
        for r in range(1, reps + 1):
            while True:
                msg = recv()
                if TAG.unpack_from(msg)[0] == END:
                    break
                send(bytes(msg))


def run_case(kind, rtt, size, args, tmpdir):
    system = "python-mp-" + kind
    rec = {"system": system, "pattern": "rtt" if rtt else "throughput", "size": size}
    setup_a, setup_b, keep = make_channel(kind, rtt, size, tmpdir)
    ctl = {"ready": mp.Value("i", 0), "go": mp.RawValue("i", 0), "stop": mp.RawValue("i", 0)}
    res_r, res_w = mp.Pipe(duplex=False)
    warm = args.warmup
    pa = mp.Process(target=side_a, args=(rtt, size, args.reps, warm, args.seconds,
                                          setup_a, ctl, res_w, args.cpu_a))
    pb = mp.Process(target=side_b, args=(rtt, size, args.reps, setup_b, ctl, args.cpu_b))
    pa.start()
    pb.start()
    budget = args.reps * (warm + args.seconds) * 3 + 30
    out = None
    if res_r.poll(budget):
        out = res_r.recv()
    for p in (pa, pb):
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join()
    for k in keep:
        try:
            k.close()
        except Exception:
            pass
    if out is None:
        rec["error"] = "timed out or died"
        return rec
    if out[0] != "ok":
        rec["error"] = out[1]
        return rec
    figs = out[1]
    rec["reps"] = args.reps
    if not rtt:
        m = [f[0] for f in figs]
        med = statistics.median(m)
        rec.update(msgs_per_s=med, bytes_per_s=med * size,
                   msgs_per_s_min=min(m), msgs_per_s_max=max(m),
                   bytes_per_s_min=min(m) * size, bytes_per_s_max=max(m) * size)
    else:
        for i, name in enumerate(("p50_ns", "p99_ns", "p999_ns")):
            v = [f[i] for f in figs]
            rec[name] = statistics.median(v)
            rec[name + "_min"] = min(v)
            rec[name + "_max"] = max(v)
    rec["note"] = NOTES[system]
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", default="pipe,queue,listener")
    ap.add_argument("--sizes", default="64,4096,65536,1048576")
    ap.add_argument("--patterns", default="throughput,rtt")
    ap.add_argument("--warmup", type=float, default=0.1,
                    help="warm-up seconds per repetition (bench/harness.h WarmupNs)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--cpu-a", type=int, default=0)
    ap.add_argument("--cpu-b", type=int, default=1)
    args = ap.parse_args()
    mp.set_start_method("fork")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    kinds = [k.replace("python-mp-", "") for k in args.systems.split(",") if k]
    with tempfile.TemporaryDirectory(prefix="shmlink-compare-py-") as tmpdir:
        for kind in kinds:
            for rtt in [p == "rtt" for p in args.patterns.split(",") if p]:
                for size in sizes:
                    print("  running python-mp-%s %s %d B ..." % (kind, "rtt" if rtt else "throughput", size),
                          file=sys.stderr, flush=True)
                    rec = run_case(kind, rtt, size, args, tmpdir)
                    print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
