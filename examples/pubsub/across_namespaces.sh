#!/usr/bin/env bash
# Copyright shmlink authors. SPDX-License-Identifier: MIT
#
# The quote feed across three "hosts": network namespaces joined by veth pairs, each with
# its own /dev/shm (a private tmpfs), as separate machines would have.
#
#   host pub:  quote_publisher -> topic /quotes -> shmlink-bridge export topic (tcp :7003)
#   host a:    shmlink-bridge import topic -> topic /quotes -> quote_subscriber (C++)
#   host b:    shmlink-bridge import topic -> topic /quotes -> quote_summary.py (Python, NumPy)
#
#   bash examples/pubsub/across_namespaces.sh [--count 20000] [--rate 10000]
#
# Needs root (network namespaces, tmpfs mounts). Installs and builds what is missing, then
# prints each subscriber's summary and exits 0 if both received an unbroken run of quotes
# ending with the last one published. An importing host receives what is published once
# it is connected (the bridge's topic semantics), so `first` may be above 0.
# SHMLINK_BIN=DIR skips the build and takes the programs from DIR (laid out as bazel-bin);
# KEEP_WORK=1 keeps the work directory (every program's log) for a look.
# Everything it creates (namespaces, veths, mounts, files) is removed on exit.
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
count=20000
rate=10000
while [ $# -gt 0 ]; do
  case "$1" in
    --count) count=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    *) echo "across_namespaces: unknown option $1 (--count N, --rate R)" >&2; exit 2 ;;
  esac
done

fail() { echo "across_namespaces: $*" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || fail "needs root (network namespaces and tmpfs mounts)"
command -v ip >/dev/null || fail "needs ip (apt-get install iproute2)"
command -v unshare >/dev/null || fail "needs unshare (apt-get install util-linux)"
py=/usr/bin/python3
[ -x "$py" ] || py=python3
"$py" -c 'import numpy' 2>/dev/null || apt-get install -y -q python3-numpy >/dev/null ||
  fail "needs NumPy (apt-get install python3-numpy)"

bin=${SHMLINK_BIN:-}
if [ -z "$bin" ]; then
  (cd "$src" && bash scripts/setup.sh &&
    bazel build -c opt //examples/pubsub:all //bridge:shmlink-bridge //python:shmlink/_shmlink.so)
  bin="$src/bazel-bin"
fi
for p in examples/pubsub/quote_publisher examples/pubsub/quote_subscriber bridge/shmlink-bridge \
         python/shmlink/_shmlink.so; do
  [ -e "$bin/$p" ] || fail "$bin/$p is missing"
done

tag=$(($$ % 100000))
ns_pub="shmlink-pub-$tag" ns_a="shmlink-a-$tag" ns_b="shmlink-b-$tag"
work=$(mktemp -d /tmp/shmlink-ns.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for ns in "$ns_pub" "$ns_a" "$ns_b"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

# Three namespaces; veth pairs pub<->a (10.79.1.0/24) and pub<->b (10.79.2.0/24).
for ns in "$ns_pub" "$ns_a" "$ns_b"; do
  ip netns add "$ns" || fail "cannot create network namespace $ns"
  ip -n "$ns" link set lo up
done
ip link add "pa$tag" netns "$ns_pub" type veth peer name "a$tag" netns "$ns_a"
ip link add "pb$tag" netns "$ns_pub" type veth peer name "b$tag" netns "$ns_b"
ip -n "$ns_pub" addr add 10.79.1.1/24 dev "pa$tag"
ip -n "$ns_pub" addr add 10.79.2.1/24 dev "pb$tag"
ip -n "$ns_a" addr add 10.79.1.2/24 dev "a$tag"
ip -n "$ns_b" addr add 10.79.2.2/24 dev "b$tag"
for l in "$ns_pub pa$tag" "$ns_pub pb$tag" "$ns_a a$tag" "$ns_b b$tag"; do
  set -- $l
  ip -n "$1" link set "$2" up
done

SHMLINK_BRIDGE_AUTHKEY=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export SHMLINK_BRIDGE_AUTHKEY
export PYTHONPATH="$src/python:$bin/python"

# Runs a host's script in its namespace with a /dev/shm of its own.
host() {  # host NS SCRIPT
  ip netns exec "$1" unshare --mount --propagation private bash -c \
    "set -e; mount -t tmpfs -o size=64m shmlink-host /dev/shm; $2" &
  pids+=($!)
}
wait_for() {  # wait_for FILE SECONDS: polls for FILE
  local n=$(($2 * 20))
  while [ ! -e "$1" ] && [ "$n" -gt 0 ]; do sleep 0.05; n=$((n - 1)); done
  [ -e "$1" ]
}

# A subscribing host: the subscriber creates the typed topic, the importing bridge writes
# the feed into it. When the publisher closes its topic, the end crosses the bridge: the
# importer closes the local topic (the subscriber prints its summary) and exits.
subscriber_host() {  # NAME NS EXPORTER_ADDR SUBSCRIBER...
  local name=$1 ns=$2 addr=$3
  shift 3
  host "$ns" "
    $* > '$work/$name.json' 2> '$work/$name.err' &
    s=\$!
    n=200; while [ ! -e /dev/shm/quotes ] && [ \$n -gt 0 ]; do sleep 0.05; n=\$((n - 1)); done
    touch '$work/$name.ready'
    # Connects at the first try once the exporter listens (no reconnect back-off).
    n=600; while [ ! -e '$work/exporting' ] && [ \$n -gt 0 ]; do sleep 0.05; n=\$((n - 1)); done
    '$bin/bridge/shmlink-bridge' import topic /quotes --connect 'tcp://$addr:7003' \
      2> '$work/import-$name.log' &
    b=\$!
    rs=0; wait \$s || rs=\$?
    wait \$b || rs=\$?
    echo \$rs > '$work/$name.done'"
}

subscriber_host a "$ns_a" 10.79.1.1 \
  "'$bin/examples/pubsub/quote_subscriber' --topic /quotes --create 1"
subscriber_host b "$ns_b" 10.79.2.1 \
  "$py '$src/examples/pubsub/quote_summary.py' --topic /quotes --create --json"
wait_for "$work/a.ready" 20 && wait_for "$work/b.ready" 20 || {
  cat "$work"/*.err >&2 2>/dev/null || true
  fail "a subscriber did not create its topic"
}


# The publishing host: the publisher creates the topic and waits for one local subscriber
# (the exporting bridge); the bridge fans the feed out to both importing hosts and, when
# the publisher closes the topic, the end of the stream.
host "$ns_pub" "
  '$bin/examples/pubsub/quote_publisher' --topic /quotes --count $count --rate $rate \
    --wait-subscribers 1 > '$work/publisher.out' &
  p=\$!
  n=200; while [ ! -e /dev/shm/quotes ] && [ \$n -gt 0 ]; do sleep 0.05; n=\$((n - 1)); done
  '$bin/bridge/shmlink-bridge' export topic /quotes --bind tcp://0.0.0.0:7003 \
    2> '$work/export.log' &
  e=\$!
  wait \$p
  n=600; while [ ! -e '$work/done' ] && [ \$n -gt 0 ]; do sleep 0.05; n=\$((n - 1)); done
  kill -TERM \$e; wait \$e || true"
n=400
until grep -q "exporting topic" "$work/export.log" 2>/dev/null || [ $n -eq 0 ]; do
  sleep 0.05; n=$((n - 1))
done
[ $n -gt 0 ] || { cat "$work/export.log" >&2 2>/dev/null; fail "the exporting bridge did not start"; }
touch "$work/exporting"


timeout_s=$((30 + 2 * count / (rate > 0 ? rate : 1)))
wait_for "$work/a.done" "$timeout_s" && wait_for "$work/b.done" "$timeout_s" || {
  cat "$work"/*.log "$work"/*.err >&2 2>/dev/null || true
  fail "the subscribing hosts did not see the end of the stream within $timeout_s s"
}
touch "$work/done"
cat "$work/publisher.out"

status=0
for h in a b; do
  rc=$(cat "$work/$h.done")
  [ "$rc" = 0 ] || { echo "host $h: the subscriber or the importing bridge exited $rc"; status=1; }
done
python3 - "$work/a.json" "$work/b.json" "$count" <<'EOF' || status=1
import json, sys
count = int(sys.argv[3])
ok = True
for path, host in ((sys.argv[1], "a (C++)"), (sys.argv[2], "b (Python)")):
    try:
        s = json.loads(open(path).read().strip().splitlines()[-1])
    except (OSError, IndexError, ValueError):
        print("host %s: no summary" % host)
        ok = False
        continue
    good = s["count"] > 0 and s["gaps"] == 0 and s["first"] + s["count"] == count
    print("host %s: %d quotes, seq %d..%d, gaps %d, mean mid %.4f: %s" % (
        host, s["count"], s["first"], s["first"] + s["count"] - 1, s["gaps"], s["mean_mid"],
        "ok" if good else "NOT an unbroken run ending with the last quote"))
    ok = ok and good
sys.exit(0 if ok else 1)
EOF
[ $status -eq 0 ] || cat "$work"/*.log "$work"/*.err >&2 2>/dev/null || true
exit $status
