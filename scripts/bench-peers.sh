#!/usr/bin/env bash
# sessiond beside its peers in one run: the bot's locked turn (lock, read,
# write + 1, release) on sessiond (redis backend), on etcd's lock service,
# and on a client-side lock on plain Redis, each on many sessions (rmw) and
# on one (hot), with the empty RPC measured around each workload.
#
#   scripts/bench-peers.sh [duration] [callers]
#
# Needs a release build (cargo build --release --bins) and etcd (Debian's
# etcd-server; installed when missing). Each server gets a free port and a
# fresh directory; all are stopped at the end. Prints one JSON line per
# workload (sessiond-bench's format).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-10s}
callers=${2:-64}
command -v etcd >/dev/null || { apt-get update -qq && apt-get install -y -qq etcd-server >/dev/null; }

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

rport=$(port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null &
pids+=($!)
eport=$(port)
epeer=$(port)
etcd --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$eport" \
  --advertise-client-urls "http://127.0.0.1:$eport" \
  --listen-peer-urls "http://127.0.0.1:$epeer" >"$work/etcd.log" 2>&1 &
pids+=($!)
sport=$(port)
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
target/release/sessiond --listen "127.0.0.1:$sport" --redis-url "redis://127.0.0.1:$rport/0" \
  --log-level warn &
spid=$!
pids+=($spid)

target/release/sessiond-bench --target "127.0.0.1:$sport" --duration "$duration" \
  --callers "$callers" --server-pid "$spid" \
  --etcd "127.0.0.1:$eport" --redis-lock "redis://127.0.0.1:$rport/1" \
  --workloads rmw,etcd-rmw,redis-lock-rmw,hot,etcd-hot,redis-lock-hot
