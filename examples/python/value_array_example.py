# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""The seed's shared memory: Value and Array, updated under their lock (shmlink)."""
from multiprocessing import Process

from shmlink import Array, Value


def work(counter, squares):
    for _ in range(100):
        with counter.get_lock():
            counter.value += 1
    with squares.get_lock():
        for i in range(len(squares)):
            squares[i] = i * i


if __name__ == "__main__":
    counter = Value("i", 0)
    squares = Array("d", 5)
    ps = [Process(target=work, args=(counter, squares)) for _ in range(4)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    print("counter:", counter.value)
    print("squares:", squares[:])
