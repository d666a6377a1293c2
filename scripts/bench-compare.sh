#!/usr/bin/env bash
# Compares two builds of sessiond under the same load, on the redis backend:
# each build serves in turn (A B A B ...), driven by one sessiond-bench, and
# the ratios to the empty RPC are printed per run, so a change is judged
# against the drift of the shared machine.
#
#   scripts/bench-compare.sh DIR_A DIR_B [rounds] [duration] [workloads]
#
# DIR_A, DIR_B: folders holding a release `sessiond` each (e.g. a copy of
# target/release from before a change, and target/release). The bench binary
# is DIR_B's sessiond-bench. Defaults: 2 rounds, 5s, the workloads
# read-cached,read-strong,rmw,health.
set -euo pipefail

a=${1:?DIR_A}
b=${2:?DIR_B}
rounds=${3:-2}
duration=${4:-5s}
workloads=${5:-read-cached,read-strong,rmw,health}
bench="$b/sessiond-bench"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(port)
work=$(mktemp -d)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null &
redis_pid=$!
pid=
trap 'kill $redis_pid ${pid:-} 2>/dev/null; rm -rf "$work"' EXIT
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done

# One line per workload: its throughput as a ratio to the empty RPC's.
summary=$(cat <<'PY'
import json, sys
side, rnd = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    try:
        r = json.loads(line)
    except ValueError:
        continue
    if "vs_empty" not in r:
        continue
    extra = ""
    if "check" in r:
        extra += " check " + r["check"]
    if r["errors"]:
        extra += " errors " + json.dumps(r["errors"])
    print("round %s %s %-12s %.3f x empty  (%.0f/s, p99 %.0f us)%s" % (
        rnd, side, r["workload"], r["vs_empty"]["throughput"], r["throughput"],
        r["latency_us"]["p99"], extra))
PY
)

for round in $(seq 1 "$rounds"); do
  for side in A B; do
    dir=$a; [ "$side" = B ] && dir=$b
    redis-cli -p "$rport" flushall >/dev/null
    sport=$(port)
    "$dir/sessiond" --listen "127.0.0.1:$sport" --redis-url "redis://127.0.0.1:$rport/0" \
      --log-level warn &
    pid=$!
    until (echo > "/dev/tcp/127.0.0.1/$sport") 2>/dev/null; do sleep 0.05; done
    "$bench" --target "127.0.0.1:$sport" --workloads "$workloads" --duration "$duration" |
      python3 -c "$summary" "$side" "$round"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    pid=
  done
done
