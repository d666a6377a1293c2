#!/usr/bin/env bash
# read-cached, read-strong and rmw on standalone Redis and on a 3-master
# Redis Cluster, one after the other in one run, with the same release build
# and the same load (sessiond-bench's defaults: 64 callers, 4 connections).
#
#   cargo build --release --bins
#   scripts/bench-topologies.sh [DURATION]      # default 10s per workload
#
# Prints one line per topology and workload: calls/s, p50 and p99 (µs) and
# errors; the full JSON of each run goes to $OUT (default target/bench-topologies).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
duration="${1:-10s}"
out="${OUT:-target/bench-topologies}"
mkdir -p "$out"
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

redis() { # port [args...]
    local port="$1"; shift
    mkdir -p "$work/$port"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$work/$port" "$@" >/dev/null 2>&1 &
    pids+=($!)
    until redis-cli -p "$port" PING >/dev/null 2>&1; do sleep 0.05; done
}

run() { # name sessiond-args...
    local name="$1"; shift
    target/release/sessiond --listen 127.0.0.1:50081 --log-level warn "$@" &
    local pid=$!
    pids+=($pid)
    target/release/sessiond-bench --target 127.0.0.1:50081 --duration "$duration" \
        --workloads read-cached,read-strong,rmw --server-pid "$pid" > "$out/$name.json"
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    python3 - "$name" "$out/$name.json" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
for line in open(path):
    line = line.strip()
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    w = r.get("workload")
    if w in ("read-cached", "read-strong", "rmw"):
        lat = r.get("latency_us", {})
        print(f"{name:10} {w:12} {r.get('throughput', 0):>9.0f}/s  p50 {lat.get('p50', 0):>7.0f} us  p99 {lat.get('p99', 0):>7.0f} us  errors {r.get('errors', {})}  {r.get('check', '')}")
PY
}

redis 6395
run standalone --redis-url redis://127.0.0.1:6395/0

for port in 7201 7202 7203; do
    redis "$port" --cluster-enabled yes --cluster-config-file "$work/$port/nodes.conf"
done
redis-cli --cluster create 127.0.0.1:7201 127.0.0.1:7202 127.0.0.1:7203 \
    --cluster-replicas 0 --cluster-yes >/dev/null
# (No `| grep -q`: with pipefail, grep leaving early fails the pipeline.)
until [[ $(redis-cli -p 7201 CLUSTER INFO) == *cluster_state:ok* ]]; do sleep 0.1; done
run cluster --redis-cluster 127.0.0.1:7201,127.0.0.1:7202,127.0.0.1:7203
