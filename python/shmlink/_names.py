# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""Default shm names: /shmlink-<kind>-<pid>.<process tag>-<random>.

The pid alone is not unique across PID namespaces (containers, sandboxes) sharing /dev/shm,
so a random per-process tag (renewed in forked children) follows it.
"""
import os
import secrets

_tag = secrets.token_hex(3)


def _renew():
    global _tag
    _tag = secrets.token_hex(3)


os.register_at_fork(after_in_child=_renew)


def prefix(kind):
    """The prefix (without '/') of names this process gives objects of `kind`."""
    return "shmlink-%s-%d.%s-" % (kind, os.getpid(), _tag)


def new_name(kind):
    return "/" + prefix(kind) + secrets.token_hex(4)
