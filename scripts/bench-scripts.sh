#!/usr/bin/env bash
# What Redis spends on sessiond's calls, for two builds in turn. For each
# round, workload and build: a fresh redis-server and that build's
# sessiond, driven by that build's sessiond-bench (64 callers, 4
# connections); prints the throughput (and × the empty RPC), Redis's CPU
# per operation (utime + stime of redis-server, from /proc), the commands
# Redis ran per operation (INFO commandstats: the scripts, and what they ran
# inside) and a script call's time as Redis measures it (usec_per_call:
# wall time, so it grows when the machine is busy).
#
#   scripts/bench-scripts.sh OLD_DIR NEW_DIR [DURATION] [ROUNDS] [WORKLOADS]
#
# OLD_DIR and NEW_DIR hold a release build's sessiond and sessiond-bench
# (e.g. a copy of target/release from another commit, and target/release).
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?OLD_DIR}
new=${2:?NEW_DIR}
duration=${3:-5s}
rounds=${4:-3}
workloads=${5:-rmw,ops,hot}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

for round in $(seq "$rounds"); do
  for w in ${workloads//,/ }; do
    for build in old new; do
      dir=$old
      if [ "$build" = new ]; then dir=$new; fi
      rport=$(free_port)
      gport=$(free_port)
      redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null &
      rpid=$!
      until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
      "$dir/sessiond" --listen "127.0.0.1:$gport" --redis-url "redis://127.0.0.1:$rport" \
        --log-level warn >"$work/sessiond.log" 2>&1 &
      spid=$!
      pids=("$rpid" "$spid")
      # The bench measures the empty RPC first, then the workload: Redis is
      # idle until the workload starts, so its CPU over the whole run is the
      # workload's (and the bench's setup writes, counted in its ops too).
      "$dir/sessiond-bench" --target "127.0.0.1:$gport" --workloads "$w" --duration "$duration" \
        >"$work/bench.json" &
      bpid=$!
      r0=$(ticks "$rpid")
      redis-cli -p "$rport" config resetstat >/dev/null
      wait "$bpid"
      r1=$(ticks "$rpid")
      redis-cli -p "$rport" info commandstats >"$work/stats"
      kill "$spid" "$rpid"
      wait "$spid" "$rpid" 2>/dev/null || true
      python3 - "$round" "$w" "$build" "$((r1 - r0))" "$hz" "$work/bench.json" "$work/stats" <<'PY'
import json, sys
round_, w, build, ticks, hz, bench, stats = sys.argv[1:]
report = next(j for j in map(json.loads, filter(None, open(bench).read().splitlines()))
              if j.get("workload") == w)
calls, script = {}, None
for line in open(stats):
    if not line.startswith("cmdstat_"):
        continue
    name, fields = line.strip()[8:].split(":", 1)
    f = dict(kv.split("=") for kv in fields.split(","))
    calls[name] = int(f["calls"])
    if name in ("fcall", "evalsha"):
        script = float(f["usec_per_call"])
ops = report["ops"]
inside = sum(n for name, n in calls.items() if name not in ("fcall", "evalsha", "eval", "config|resetstat"))
scripts = calls.get("fcall", 0) + calls.get("evalsha", 0)
print(f"round {round_} {w:6} {build}: {report['throughput']:9.1f}/s "
      f"({report.get('vs_empty', {}).get('throughput', 0):.3f} x empty), "
      f"Redis {int(ticks) / int(hz) * 1e6 / ops:6.1f} us CPU/op, "
      f"{scripts / ops:4.2f} scripts/op, {inside / ops:5.1f} commands/op, "
      f"script {script or 0:5.1f} us/call, {report.get('check', '')}")
PY
    done
  done
done
