# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""The seed's Listener program, for stock Python (no shmlink needed).

Unchanged from the seed except that the address may be given on the command line
(default ('localhost', 6000), as in the seed), so tests can use a free port:

    python3 seed_listener.py [HOST:PORT]

Run it, then e.g. `echo_client --address localhost:6000 --authkey 'secret password'
--pickle close` or the seed's client program.
"""
import sys
from multiprocessing.connection import Listener

address = ('localhost', 6000)
if len(sys.argv) > 1:
    host, port = sys.argv[1].rsplit(':', 1)
    address = (host, int(port))

listener = Listener(address, authkey=b'secret password')
conn = listener.accept()
print('connection accepted from', listener.last_accepted, flush=True)
while True:
    msg = conn.recv()
    # do something with msg
    print('received', repr(msg), flush=True)
    if msg == 'close':
        conn.close()
        break
listener.close()
