# Copyright shmlink authors. SPDX-License-Identifier: MIT
"""The `shmlink` command end to end, against real segments held by real processes.

Segments are created in /dev/shm by tests/cli/cli_fixture under unique names, and the
command is always given those names (or a private --dir): other tests' segments in the
shared /dev/shm are never touched.
"""
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

import pytest


def runfile(rel):
    for base in (os.environ.get("TEST_SRCDIR"), os.environ.get("RUNFILES_DIR")):
        if base and os.path.exists(os.path.join(base, "shmlink", rel)):
            return os.path.join(base, "shmlink", rel)
    here = os.path.dirname(os.path.abspath(__file__))
    p = os.path.join(here, "..", "..", "bazel-bin", rel)
    if os.path.exists(p):
        return p
    pytest.skip("runfile %s not found" % rel)


CLI = runfile("cli/shmlink")
FIXTURE = runfile("tests/cli/cli_fixture")


def unique(tag):
    return "/shmlink-clitest-%s-%d-%d" % (tag, os.getpid(), random.randrange(1 << 30))


def shm(name):
    return "/dev/shm" + name


def run(*args, check=True, env=None):
    p = subprocess.run([CLI] + list(args), capture_output=True, text=True, timeout=60, env=env)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stdout, p.stderr)
    return p


def listing(name, *extra):
    """The `list --json` entry of `name` (or None)."""
    out = json.loads(run("list", "--json", *extra).stdout)
    return next((e for e in out if e["name"] == name), None)


class Fixture:
    """A cli_fixture process in its own process group (its forked consumer included)."""

    def __init__(self, *args, env=None):
        self.proc = subprocess.Popen([FIXTURE] + list(args), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True, env=env)
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", (line, self.proc.stderr.read())

    def kill9(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill9()


@pytest.fixture
def name(request):
    n = unique(request.node.name[5:25])
    yield n
    leftover = os.path.exists(shm(n))
    if leftover:
        os.unlink(shm(n))
    assert not leftover, "test left %s behind" % n


def test_help_is_enough_to_start():
    out = run("--help").stdout
    for word in ("list", "inspect", "watch", "clean", "stale", "dead", "unknown", "kill -9"):
        assert word in out, word
    out = run("clean", "--help").stdout
    assert "--dry-run" in out


def test_kill9_holder_is_dead_and_clean_removes_it(name):
    with Fixture("hold", name) as f:
        e = listing(name)
        assert e["status"] == "in-use" and not e["stale"]
        assert {h["role"] for h in e["holders"]} == {"creator", "producer", "consumer"}
        assert all(h["state"] == "alive" and h["pid"] == f.proc.pid for h in e["holders"])
        # Layout 4 rings: every verdict is the kernel's (holder locks), not /proc's.
        assert all(h["why"] == "holder lock held (kernel)" for h in e["holders"]), e["holders"]
        f.kill9()  # SIGKILL and reaped
        e = listing(name)
        assert all(h["state"] == "dead" for h in e["holders"]), e["holders"]
        assert all(h["why"] == "holder lock released (kernel)" for h in e["holders"])
        assert e["stale"] and e["status"] == "stale"
        dry = run("clean", "--dry-run", name).stdout
        assert dry.startswith("would remove " + name), dry
        assert os.path.exists(shm(name))
        out = run("clean", name).stdout
        assert out.startswith("removed " + name + ": stale"), out
        assert not os.path.exists(shm(name))
        assert listing(name) is None


def test_live_segment_is_never_removed(name):
    with Fixture("hold", name):
        out = run("clean", name).stdout
        assert out.startswith("kept " + name + ": in use"), out
        assert os.path.exists(shm(name))
    run("clean", name)


def test_clean_loop_against_live_recreate_loop(name):
    # The fixture creates and destroys `name` in a loop, always holding it alive, and checks
    # before each destroy that the name still refers to its own file.
    proc = subprocess.Popen([FIXTURE, "recreate", name, "600"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    removed = []
    cleans = 0
    while proc.poll() is None:
        out = run("clean", name, check=False).stdout
        cleans += 1
        removed += [l for l in out.splitlines() if l.startswith("removed")]
    out, err = proc.communicate()
    assert proc.returncode == 0 and "violations 0" in out, (out, err)
    assert removed == []
    assert cleans >= 5


def test_clean_races_a_reclaiming_creator(name):
    # A stale segment under `name`, then at the same time: a creator that reclaims the name
    # (unlinks the stale one and creates its own) and `shmlink clean name`. Whatever the
    # interleaving, the creator's new, live segment must keep the name.
    for _ in range(12):
        with Fixture("hold", name) as f:
            f.kill9()
        cleaner = subprocess.Popen([CLI, "clean", name], stdout=subprocess.PIPE, text=True)
        with Fixture("reclaim", name) as creator:
            cleaner.wait(timeout=60)
            creator.proc.stdin.write("check\n")
            creator.proc.stdin.flush()
            assert creator.proc.stdout.readline().strip() == "intact"
            out = run("clean", name).stdout
            assert out.startswith("kept"), out
        run("clean", name)


def test_counters_count_exactly(name):
    with Fixture("count", name, "1000", "100"):  # "ready" once the consumer drained all
        j = json.loads(run("inspect", name, "--json").stdout)
        ring = j["rings"][0]
        assert ring["producer"]["messages"] == 1000
        assert ring["producer"]["bytes"] == 100000
        assert ring["consumer"]["messages"] == 1000
        assert ring["consumer"]["bytes"] == 100000
        assert ring["fill"] == 0 and j["fill"] == 0
        assert ring["write_pos"] == ring["read_pos"] > 0
        assert len(j["holders"]) == 3 and len(j["mapped_by"]) == 2
    run("clean", name)


def test_watch_json_rate_matches_a_paced_producer(name):
    rate = 2000.0
    f = Fixture("rate", name, str(rate))
    try:
        time.sleep(0.5)
        p = run("watch", name, "--json", "--interval", "2", "--count", "2")
        lines = [json.loads(l) for l in p.stdout.splitlines()]
        assert len(lines) == 2
        for l in lines:
            assert l["name"] == name and l["interval"] > 0
        # Over the whole 4 s (the producer catches up after any stall, so only the two
        # window edges add error).
        total = sum(l["interval"] for l in lines)
        produced = sum(l["produced_msgs_per_s"] * l["interval"] for l in lines) / total
        consumed = sum(l["consumed_msgs_per_s"] * l["interval"] for l in lines) / total
        assert abs(produced - rate) <= 0.1 * rate, lines
        assert abs(consumed - rate) <= 0.1 * rate, lines
        assert abs(lines[-1]["produced_bytes_per_s"] - 100 * lines[-1]["produced_msgs_per_s"]) < 1
        # The human form: a header and one line per sample.
        human = run("watch", name, "--interval", "0.2", "--count", "2").stdout.splitlines()
        assert human[0].split()[0] == "TIME" and len(human) == 3
    finally:
        f.proc.send_signal(signal.SIGTERM)
        f.proc.wait(timeout=30)
    assert f.proc.returncode == 0
    assert not os.path.exists(shm(name))  # closed and unlinked by its creator


def test_queue_and_object_reports(name):
    obj = name + "-obj"
    with Fixture("mpmc", name), Fixture("object", obj):
        q = json.loads(run("inspect", name, "--json").stdout)
        assert q["kind"] == "mpmc-queue" and q["version"] == 4
        assert q["queue"]["produced"]["messages"] == 10
        assert q["queue"]["produced"]["bytes"] == 100
        assert q["queue"]["consumed"]["messages"] == 4
        assert q["queue"]["fill"] == 6 and q["fill"] == 6 and q["capacity"] == 16
        roles = sorted(h["role"] for h in q["holders"])
        assert roles == ["creator", "handle0.producer", "handle1.consumer"]
        o = json.loads(run("inspect", obj, "--json").stdout)
        assert o["kind"] == "shared-object" and o["object"]["data_size"] == 64
        assert o["object"]["elem_size"] == 8
        text = run("inspect", name).stdout
        assert "queue:      16 slots" in text and "produced  messages 10" in text
    out = run("clean", name, obj).stdout.splitlines()
    assert out == ["removed %s: stale: every holder is dead and nobody maps it" % n
                   for n in (name, obj)], out
    assert not os.path.exists(shm(obj))


def test_stopped_producer_holding_consumers_back_is_shown(name):
    with Fixture("mpmc-stopped", name):
        q = json.loads(run("inspect", name, "--json").stdout)
        blocking = q["queue"]["blocking"]
        assert len(blocking) == 1, blocking
        assert blocking[0]["waiting"] == "consumers" and blocking[0]["position"] == 0
        assert blocking[0]["state"] == "T (stopped)", blocking
        text = run("inspect", name).stdout
        assert "blocked   consumers wait behind position 0 (claimed, not published)" in text
    run("clean", name)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def test_directory_of_foreign_and_damaged_files(name):
    d = tempfile.mkdtemp(prefix="shmlink-clitest-")
    try:
        with Fixture("hold", name) as f:
            with open(shm(name), "rb") as src:
                seg = src.read()
            f.kill9()
        run("clean", name)
        write(os.path.join(d, "copy-stale"), seg)  # a whole segment whose holders are dead
        write(os.path.join(d, "foreign"), b"hello, I am somebody else's file\n" * 10)
        write(os.path.join(d, "empty"), b"")
        write(os.path.join(d, "short-magic"), seg[:100])
        write(os.path.join(d, "truncated"), seg[:300])  # header says 8 KiB
        bad = bytearray(seg)
        bad[40] ^= 0xFF  # geometry byte: the checksum no longer matches
        write(os.path.join(d, "corrupt"), bytes(bad))
        other = bytearray(seg)
        struct.pack_into("<I", other, 8, 99)  # layout version 99
        write(os.path.join(d, "future"), bytes(other))
        notready = bytearray(seg)
        struct.pack_into("<I", notready, 248, 0)  # creator never published it
        write(os.path.join(d, "notready"), bytes(notready))
        os.mkdir(os.path.join(d, "subdir"))
        os.symlink("/etc/passwd", os.path.join(d, "link"))
        os.mkfifo(os.path.join(d, "fifo"))

        p = run("--dir", d, "list", "--all", "--json")
        classes = {e["name"]: e["class"] for e in json.loads(p.stdout)}
        assert classes == {
            "/copy-stale": "segment", "/foreign": "foreign", "/empty": "truncated",
            "/short-magic": "truncated", "/truncated": "truncated", "/corrupt": "corrupt",
            "/future": "other-layout", "/notready": "incomplete", "/link": "unreadable",
            "/fifo": "unreadable"}, classes
        default = {e["name"] for e in json.loads(run("--dir", d, "list", "--json").stdout)}
        assert "/foreign" not in default and "/truncated" in default
        human = run("--dir", d, "list", "--all").stdout
        assert "foreign" in human and "truncated" in human and "corrupt" in human
        for n in classes:
            assert run("--dir", d, "inspect", n, check=False).returncode in (0, 1)

        out = run("--dir", d, "clean").stdout
        assert "removed /copy-stale" in out
        # The copies of a stale segment with a readable creator are stale too; nothing else
        # is removed, and foreign files are not even mentioned.
        left = set(os.listdir(d))
        assert {"foreign", "empty", "short-magic", "truncated", "corrupt", "subdir", "link",
                "fifo"} <= left, left
        assert "foreign" not in out
    finally:
        shutil.rmtree(d)


def test_python_dash_m_delegates(tmp_path):
    env = dict(os.environ, SHMLINK_CLI=CLI, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.run([sys.executable, "-m", "shmlink", "--dir", str(tmp_path), "list",
                        "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == []
    env["SHMLINK_CLI"] = str(tmp_path / "missing")
    p = subprocess.run([sys.executable, "-m", "shmlink", "list"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert p.returncode == 127 and "SHMLINK_CLI" in p.stderr


def test_shmlink_log_lifecycle_events(name):
    env = dict(os.environ, SHMLINK_LOG="info")
    with Fixture("hold", name, env=env) as f:
        f.kill9()
        err = f.proc.stderr.read()
    assert "info create %s: spsc-ring" % name in err, err
    p = run("clean", name, env=env)
    assert "stale-removed %s" % name in p.stderr, p.stderr
    env.pop("SHMLINK_LOG")
    with Fixture("hold", name, env=env) as f:
        f.kill9()
        assert f.proc.stderr.read() == ""  # silent by default
    run("clean", name)
