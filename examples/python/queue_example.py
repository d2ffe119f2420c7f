# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""The seed's Queue: several producers and consumers sharing one FIFO (shmlink.Queue)."""
from multiprocessing import Process

from shmlink import Queue


def producer(q, who):
    for i in range(5):
        q.put((who, i))


def consumer(q, results):
    total = 0
    while True:
        item = q.get()
        if item is None:
            break
        total += 1
    results.put(total)


if __name__ == "__main__":
    q, results = Queue(), Queue()
    producers = [Process(target=producer, args=(q, w)) for w in range(3)]
    consumers = [Process(target=consumer, args=(q, results)) for _ in range(2)]
    for p in producers + consumers:
        p.start()
    for p in producers:
        p.join()
    for _ in consumers:
        q.put(None)
    print("items consumed:", sum(results.get() for _ in consumers))
    for c in consumers:
        c.join()
