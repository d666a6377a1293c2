#!/usr/bin/env bash
# Latency at a fixed arrival rate (sessiond-bench --rate): a fresh
# redis-server and one release sessiond (redis backend), then for each rate
# each workload open-loop, latency from the time each request was due.
# Prints one line per run: p50/p99/p99.9/max of the latency and how late
# the bench itself sent its requests (send lag), all in µs.
#
#   scripts/bench-openloop.sh [duration] [rates] [workloads] [bench dirs]
#
# Defaults: 10s, 1000,10000, read-cached,read-strong,rmw,bot-mix (the empty
# RPC runs before and between them, open-loop too), target/release. Several
# bench dirs (comma-separated: e.g. an older build's and this one's) take
# turns at each rate, against the same server.
#
# SENDER_NICE=-20 (as root) gives the bench's schedule-keeping thread that
# nice value (--sender-nice), so that on a machine busy with other work the
# requests still go out on time.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-10s}
rates=${2:-1000,10000}
workloads=${3:-read-cached,read-strong,rmw,bot-mix}
benches=${4:-target/release}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

rport=$(port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null &
pids+=($!)
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
sport=$(port)
target/release/sessiond --listen "127.0.0.1:$sport" --redis-url "redis://127.0.0.1:$rport/0" \
  --log-level warn 2>/dev/null &
pids+=($!)
until (echo > "/dev/tcp/127.0.0.1/$sport") 2>/dev/null; do sleep 0.05; done

summary=$(cat <<'PY'
import json, sys
bench = sys.argv[1]
for line in sys.stdin:
    r = json.loads(line)
    l, g, h = r["latency_us"], r.get("send_lag_us", {}), r.get("handover_lag_us", {})
    errors = (" errors " + json.dumps(r["errors"])) if r["errors"] else ""
    check = (" check " + r["check"].split(":")[0]) if "check" in r else ""
    print("%-22s %6s/s %-12s p50 %6d p99 %6d p99.9 %6d max %7d | lag p50 %5d p99 %5d max %6d (handed over p50 %4d p99 %5d) | %.0f/s%s%s" % (
        bench, r["rate"], r["workload"], l["p50"], l["p99"], l["p999"], l["max"],
        g.get("p50", 0), g.get("p99", 0), g.get("max", 0), h.get("p50", 0), h.get("p99", 0),
        r["throughput"], check, errors))
PY
)

for rate in ${rates//,/ }; do
  for dir in ${benches//,/ }; do
    "$dir/sessiond-bench" --target "127.0.0.1:$sport" --rate "$rate" --duration "$duration" \
      --workloads "$workloads" ${SENDER_NICE:+--sender-nice "$SENDER_NICE"} | python3 -c "$summary" "$dir"
  done
done
