#!/usr/bin/env bash
# The instructions redis-server or sessiond executes per operation of a
# workload, for two builds: exact and the same whatever else the machine is
# doing (callgrind counts instructions, not time). For each build and
# workload, the process runs under callgrind twice, with a short and a long
# run of sessiond-bench (4 callers on 8 sessions); the difference of the
# totals over the difference of the operations cancels what does not depend
# on them (start-up, loading the scripts, the bench's setup).
#
#   scripts/instructions.sh redis|sessiond OLD_DIR NEW_DIR [WORKLOADS] [SHORT] [LONG]
#
# OLD_DIR and NEW_DIR hold a release build's sessiond and sessiond-bench.
# Needs valgrind. Under callgrind a process runs about 50 times slower, so
# each run makes a few thousand operations.
set -euo pipefail
cd "$(dirname "$0")/.."
of=${1:?redis or sessiond}
old=${2:?OLD_DIR}
new=${3:?NEW_DIR}
workloads=${4:-rmw,ops}
short=${5:-3s}
long=${6:-9s}
case $of in redis | sessiond) ;; *) echo "redis or sessiond, not $of" >&2; exit 64 ;; esac
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT

# One run: prints "<operations> <instructions>".
run() {
  local dir=$1 w=$2 duration=$3 rport gport rpid spid ops
  rport=$(free_port)
  gport=$(free_port)
  local redis=(redis-server) sessiond=("$dir/sessiond")
  local grind=(valgrind --tool=callgrind --callgrind-out-file="$work/cg.out")
  if [ "$of" = redis ]; then redis=("${grind[@]}" "${redis[@]}"); else sessiond=("${grind[@]}" "${sessiond[@]}"); fi
  "${redis[@]}" --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null 2>&1 &
  rpid=$!
  until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.2; done
  "${sessiond[@]}" --listen "127.0.0.1:$gport" --redis-url "redis://127.0.0.1:$rport" \
    --redis-timeout 10s --log-level warn >"$work/sessiond.log" 2>&1 &
  spid=$!
  pids=("$rpid" "$spid")
  # Until sessiond answers (slow to start under callgrind).
  until "$dir/sessiond-bench" --target "127.0.0.1:$gport" --workloads health --duration 10ms \
    --callers 1 --connections 1 >/dev/null 2>&1; do sleep 0.5; done
  ops=$("$dir/sessiond-bench" --target "127.0.0.1:$gport" --workloads "$w" --duration "$duration" \
    --callers 4 --connections 1 --sessions 8 |
    python3 -c 'import json, sys; print(next(j["ops"] for j in map(json.loads, sys.stdin) if j["workload"] == sys.argv[1]))' "$w")
  # Both end cleanly, so that callgrind writes its counts.
  kill -INT "$spid"
  wait "$spid" 2>/dev/null || true
  redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true
  wait "$rpid" 2>/dev/null || true
  echo "$ops $(awk '/^(summary|totals):/ {print $2; exit}' "$work/cg.out")"
}

for w in ${workloads//,/ }; do
  for build in old new; do
    dir=$old
    if [ "$build" = new ]; then dir=$new; fi
    read -r ops_a ir_a < <(run "$dir" "$w" "$short")
    read -r ops_b ir_b < <(run "$dir" "$w" "$long")
    python3 -c 'import sys; of, w, b, oa, ia, ob, ib = sys.argv[1:]; print(f"{w:11} {b}: {(int(ib) - int(ia)) / (int(ob) - int(oa)):10.0f} {of} instructions/op ({oa} and {ob} ops)")' \
      "$of" "$w" "$build" "$ops_a" "$ir_a" "$ops_b" "$ir_b"
  done
done
