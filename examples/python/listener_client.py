# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""The seed's Client, with shmlink in place of multiprocessing.

    python3 listener_client.py [ADDRESS]      (default: localhost:6000)
"""
import sys

from shmlink.connection import Client


def main():
    address = ("localhost", 6000)
    if len(sys.argv) > 1:
        host, _, port = sys.argv[1].rpartition(":")
        address = (host, int(port)) if port.isdigit() and host else sys.argv[1]
    conn = Client(address, authkey=b"secret password")
    # can also send arbitrary objects:
    conn.send(["a", 2.5, None, int, sum])
    conn.send("close")
    conn.close()


if __name__ == "__main__":
    main()
