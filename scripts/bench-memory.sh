#!/usr/bin/env bash
# What a million cached sessions cost sessiond: a fresh redis-server and one
# release sessiond (redis backend, cache raised to 1 GiB and 10 minutes so
# every session fits), filled through gRPC by `sessiond-bench --memory`,
# which prints the server's resident memory before and after (VmRSS from
# /proc), the cache's entries and weighted bytes, then CACHED reads over all
# the sessions and over 1,000 of them in turn, and their ratio.
#
#   scripts/bench-memory.sh [sessions] [duration] [rounds] [sessiond dir]
#
# Defaults: 1000000 sessions, 5s per read run, 3 rounds, target/release.
# The last argument names another build's directory (before/after).
set -euo pipefail
cd "$(dirname "$0")/.."

sessions=${1:-1000000}
duration=${2:-5s}
rounds=${3:-3}
bin=${4:-target/release}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

rport=$(port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null &
pids+=($!)
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
sport=$(port)
"$bin/sessiond" --listen "127.0.0.1:$sport" --redis-url "redis://127.0.0.1:$rport/0" \
  --cache-max-bytes 1GiB --cache-max-age 10m --log-level warn &
spid=$!
pids+=($spid)

target/release/sessiond-bench --target "127.0.0.1:$sport" --memory --sessions "$sessions" \
  --duration "$duration" --rounds "$rounds" --server-pid "$spid"
