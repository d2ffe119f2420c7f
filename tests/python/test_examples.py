# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""The examples in examples/python/ run and print what they should."""
import os
import subprocess
import sys
import time

import pytest

from conftest import reaped, runfile


def _run(script, *args, timeout=60):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run([sys.executable, runfile("examples/python/" + script)] + list(args),
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_pipe_example():
    r = _run("pipe_example.py")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['hello', 'from', 'sender']"


def test_queue_example():
    r = _run("queue_example.py")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "items consumed: 15"


def test_value_array_example():
    r = _run("value_array_example.py")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["counter: 400", "squares: [0.0, 1.0, 4.0, 9.0, 16.0]"]


def test_numpy_stream_example():
    r = _run("numpy_stream.py", runfile("examples/python/numpy_producer"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("received 100 arrays without copying, "
                                "sum of first elements %d" % sum(i * 1000 for i in range(100)))


def test_listener_session_example(unix_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    with reaped(subprocess.Popen([sys.executable, runfile("examples/python/listener_server.py"),
                                  unix_path], stdout=subprocess.PIPE, text=True,
                                 env=env)) as server:
        assert server.stdout.readline().startswith("listening on")
        r = _run("listener_client.py", unix_path)
        assert r.returncode == 0, r.stderr
        out, _ = server.communicate(timeout=30)
        assert server.returncode == 0
        assert out.splitlines() == [
            "connection accepted from ",
            "got ['a', 2.5, None, <class 'int'>, <built-in function sum>]",
            "got close",
        ]
