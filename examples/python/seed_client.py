# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""The seed's Client program, for stock Python (no shmlink needed).

Unchanged from the seed except that the address may be given on the command line
(default ('localhost', 6000), as in the seed) and that --list also sends a list of plain
objects first (the seed's commented-out example without `int` and `sum`, which are not
data but code references that shmlink refuses to unpickle):

    python3 seed_client.py [HOST:PORT] [--list]

Runs unchanged against examples/echo_server (`echo_server --address localhost:6000
--authkey 'secret password'`).
"""
import sys
from multiprocessing.connection import Client

address = ('localhost', 6000)
args = [a for a in sys.argv[1:] if not a.startswith('--')]
if args:
    host, port = args[0].rsplit(':', 1)
    address = (host, int(port))

conn = Client(address, authkey=b'secret password')
if '--list' in sys.argv:
    conn.send(['a', 2.5, None])
    print('echoed', repr(conn.recv()), flush=True)
conn.send('close')
# can also send arbitrary objects:
# conn.send(['a', 2.5, None, int, sum])
conn.close()
