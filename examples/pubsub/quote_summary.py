# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""Summarises the quote feed of quote_publisher with NumPy, reading every quote in place.

    python3 examples/pubsub/quote_summary.py [--topic /quotes] [--json] [--create]

--create makes the typed topic instead of waiting for the publisher to: for a host whose
feed arrives through shmlink-bridge (see across_namespaces.sh).

Attaches to the typed topic by name (checking it carries feed::Quote), reads each quote as
a NumPy structured array that lies in the shared mapping (no copy), gathers the prices in
blocks, and at the end of the stream prints count, mean mid, mean/max spread, the
size-weighted mid and the publication rate.
"""
import argparse
import json
import sys
import time

import numpy as np

import shmlink

QUOTE = np.dtype([("seq", "<u8"), ("ts_ns", "<i8"), ("bid", "<f8"), ("ask", "<f8"),
                  ("bid_size", "<u4"), ("ask_size", "<u4"), ("symbol", "S8")], align=True)
assert QUOTE.itemsize == 48


def attach(name, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return shmlink.Topic.attach(name, type_name="feed::Quote", dtype=QUOTE)
        except (FileNotFoundError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--topic", default="/quotes")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--create", action="store_true",
                    help="create the typed topic (a feed that arrives through shmlink-bridge)")
    args = ap.parse_args()

    if args.create:
        topic = shmlink.Topic.create(args.topic, capacity=1 << 20, type_name="feed::Quote",
                                     dtype=QUOTE)
    else:
        topic = attach(args.topic)
    sub = topic.subscriber()
    blocks, block = [], np.empty(4096, dtype=QUOTE)
    n = gaps = 0
    expect = None
    while True:
        try:
            q = sub.recv_array(dtype=QUOTE)  # a 1-element view into shared memory
        except EOFError:
            break
        seq = int(q["seq"][0])
        if expect is not None and seq != expect:
            gaps += 1
        expect = seq + 1
        block[n % len(block)] = q[0]  # the one copy: into our own summary buffer
        n += 1
        if n % len(block) == 0:
            blocks.append(block.copy())
    if n % len(block):
        blocks.append(block[: n % len(block)].copy())
    quotes = np.concatenate(blocks) if blocks else np.empty(0, dtype=QUOTE)
    mid = (quotes["bid"] + quotes["ask"]) / 2
    spread = quotes["ask"] - quotes["bid"]
    size = quotes["bid_size"].astype(np.float64) + quotes["ask_size"]
    span_s = (quotes["ts_ns"][-1] - quotes["ts_ns"][0]) / 1e9 if n > 1 else 0.0
    summary = {
        "subscriber": "python",
        "count": n,
        "first": int(quotes["seq"][0]) if n else 0,
        "gaps": gaps,
        "lost": sub.lost,
        "mean_mid": float(mid.mean()) if n else 0.0,
        "mean_spread": float(spread.mean()) if n else 0.0,
        "max_spread": float(spread.max()) if n else 0.0,
        "size_weighted_mid": float((mid * size).sum() / size.sum()) if n else 0.0,
        "rate_per_s": (n - 1) / span_s if span_s > 0 else 0.0,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            print("%-18s %s" % (k, v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
