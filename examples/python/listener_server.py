# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""The seed's Listener session, with shmlink in place of multiprocessing.

    python3 listener_server.py [ADDRESS]      (default: localhost:6000)

Prints every message until 'close'. Run listener_client.py (or a stock
`multiprocessing.connection.Client`) against it: shmlink peers exchange messages through
shared memory, stock Python peers through the socket, with the same code.
"""
import sys

from shmlink.connection import Listener


def main():
    address = ("localhost", 6000)
    if len(sys.argv) > 1:
        host, _, port = sys.argv[1].rpartition(":")
        address = (host, int(port)) if port.isdigit() and host else sys.argv[1]
    listener = Listener(address, authkey=b"secret password")
    print("listening on", listener.address, flush=True)
    conn = listener.accept()
    print("connection accepted from", listener.last_accepted, flush=True)
    while True:
        msg = conn.recv()
        # do something with msg
        print("got", msg, flush=True)
        if msg == "close":
            conn.close()
            break
    listener.close()


if __name__ == "__main__":
    main()
