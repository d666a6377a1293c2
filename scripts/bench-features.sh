#!/usr/bin/env bash
# What each optional feature costs, in one run: one sessiond per variant,
# the variants taking turns round after round, each driven with read-cached
# and rmw by sessiond-bench (the empty RPC measured around each workload).
#
#   scripts/bench-features.sh [duration] [rounds] [variants]
#
# Variants (default: all): plain (standalone Redis, nothing on), tls (TLS on
# the gRPC listener; the bench trusts the script's own CA), auth (a tokens
# file; the bench sends its token), replicas (--redis-durability replicas:1;
# every standalone variant runs on the same master with one replica
# attached, so only the WAIT differs), cluster (a 3-master Redis Cluster),
# traces (--otlp-endpoint, every trace sampled, to a port where nothing
# listens: spans are made, batched and their export fails on the exporter's
# own thread; sending them is not measured), quotas (sessions and bytes
# quotas on the namespace). Prints one line per run and, at the end, each
# variant's mean ratio to plain's.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-5s}
rounds=${2:-2}
variants=${3:-plain,tls,auth,replicas,cluster,traces,quotas}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Runs the command until it succeeds; gives up after 20 s.
wait_for() { # what command...
  local what=$1 i=0; shift
  until "$@" >/dev/null 2>&1; do
    sleep 0.05
    i=$((i + 1))
    [ "$i" -lt 400 ] || { echo "gave up waiting for $what" >&2; exit 1; }
  done
}

redis() { # port [args...]
  local p=$1; shift
  mkdir -p "$work/$p"
  redis-server --port "$p" --bind 127.0.0.1 --save "" --appendonly no --dir "$work/$p" "$@" \
    >/dev/null 2>&1 &
  pids+=($!)
  wait_for "redis-server on $p" redis-cli -p "$p" PING
}

# A master with one replica, for every standalone variant.
master=$(port); replica=$(port)
redis "$master"
redis "$replica" --replicaof 127.0.0.1 "$master"
# (No `| grep -q`: with pipefail, grep leaving early fails the pipeline.)
wait_for "the replica" bash -c "[[ \$(redis-cli -p $master INFO replication) == *state=online* ]]"

# A 3-master cluster.
cluster=()
if [[ ,$variants, == *,cluster,* ]]; then
  for _ in 1 2 3; do
    p=$(port)
    redis "$p" --cluster-enabled yes --cluster-config-file "$work/$p/nodes.conf"
    cluster+=("127.0.0.1:$p")
  done
  redis-cli --cluster create "${cluster[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
  wait_for "the cluster" bash -c "[[ \$(redis-cli -p ${cluster[0]#*:} CLUSTER INFO) == *cluster_state:ok* ]]"
fi

# TLS: a CA and a certificate for localhost and 127.0.0.1.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench-ca \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
  -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$work/san.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
  -CAcreateserial -days 2 -extfile "$work/san.ext" -out "$work/server.pem" 2>/dev/null

# Authentication: one token, namespace default, with the admin grant.
token=bench-token-0123456789abcdef
echo "$token default admin" > "$work/tokens"

closed=$(port) # nothing listens here

summary=$(cat <<'PY'
import json, sys
variant, rnd = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    r = json.loads(line)
    if "vs_empty" not in r:
        continue
    extra = (" check " + r["check"].split(":")[0]) if "check" in r else ""
    extra += (" errors " + json.dumps(r["errors"])) if r["errors"] else ""
    print("round %s %-9s %-12s %.3f x empty  (%.0f/s, p50 %d us, p99 %d us)%s" % (
        rnd, variant, r["workload"], r["vs_empty"]["throughput"], r["throughput"],
        r["latency_us"]["p50"], r["latency_us"]["p99"], extra))
PY
)

results=$work/results
for round in $(seq 1 "$rounds"); do
  for v in ${variants//,/ }; do
    store=(--redis-url "redis://127.0.0.1:$master/0")
    server=()
    client=()
    case $v in
      plain) ;;
      tls)
        server=(--tls-cert "$work/server.pem" --tls-key "$work/server.key")
        client=(--tls-ca "$work/ca.pem" --tls-domain localhost) ;;
      auth)
        server=(--auth-tokens-file "$work/tokens")
        client=(--token "$token") ;;
      replicas) server=(--redis-durability replicas:1) ;;
      cluster)
        store=(--redis-cluster "$(IFS=,; echo "${cluster[*]}")") ;;
      traces) server=(--otlp-endpoint "http://127.0.0.1:$closed" --otlp-sample-ratio 1) ;;
      quotas) server=(--max-sessions-per-namespace 10000000 --max-bytes-per-namespace 100GiB) ;;
      *) echo "unknown variant $v" >&2; exit 64 ;;
    esac
    redis-cli -p "$master" FLUSHALL >/dev/null
    sport=$(port)
    target/release/sessiond --listen "127.0.0.1:$sport" --log-level error "${store[@]}" \
      "${server[@]}" 2>>"$work/sessiond.log" &
    spid=$!
    wait_for "sessiond ($v)" bash -c "echo > /dev/tcp/127.0.0.1/$sport"
    target/release/sessiond-bench --target "127.0.0.1:$sport" --duration "$duration" \
      --workloads read-cached,rmw --server-pid "$spid" "${client[@]}" |
      python3 -c "$summary" "$v" "$round" | tee -a "$results"
    kill "$spid"; wait "$spid" 2>/dev/null || true
  done
done

python3 - "$results" <<'PY'
import collections, re, sys
ratios = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m = re.match(r"round \d+ (\S+)\s+(\S+)\s+([0-9.]+) x empty", line)
    if m:
        ratios[(m.group(1), m.group(2))].append(float(m.group(3)))
mean = lambda v: sum(v) / len(v)
print("\nvariant    workload     x empty (rounds)                mean   vs plain")
for (v, w), r in ratios.items():
    plain = ratios.get(("plain", w))
    rel = "%.2f" % (mean(r) / mean(plain)) if plain else "-"
    print("%-10s %-12s %-32s %.3f  %s" % (v, w, ", ".join("%.3f" % x for x in r), mean(r), rel))
PY
