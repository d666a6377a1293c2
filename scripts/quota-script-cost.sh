#!/usr/bin/env bash
# What the per-namespace quotas cost update.lua on Redis: the commands each
# run makes (INFO commandstats, exact) and the Redis CPU per script
# (usec_per_call, noisy on a shared machine), for BASE's script, this tree's
# with no quota set ("off": five keys) and with both set ("on": the quota
# keys and arguments). Each run writes N new sessions of one 11-byte field.
#
#   scripts/quota-script-cost.sh [BASE] [N]     (BASE: a git revision, default main)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-main}
n=${2:-20000}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pid=
trap 'kill ${pid:-} 2>/dev/null; rm -rf "$work"' EXIT
lua=src/store/redis
printf '%s\n%s' "$(git show "$base:$lua/prelude.lua")" "$(git show "$base:$lua/update.lua")" >"$work/base.lua"
# As redis.rs assembles it: the PUBLISH line, watch.lua, the prelude,
# idempotency.lua, ops.lua, update.lua.
printf "local PUBLISH = 'PUBLISH'\n%s\n%s\n%s\n%s\n%s" "$(cat $lua/watch.lua)" "$(cat $lua/prelude.lua)" \
  "$(cat $lua/idempotency.lua)" "$(cat $lua/ops.lua)" "$(cat $lua/update.lua)" >"$work/this.lua"
k='sd:{default/__rand_int__}'
quota_keys=('sd:q:{default}:i' 'sd:q:{default}:s' 'sd:q:{default}:u')
# update.lua's arguments (see its header): BASE's (before field operations
# and idempotency keys, 11 fixed) and this tree's (15 fixed).
base_args=('' '' 0 0 60000 256 1048576 sd:invalidate x sd:wake:x 1 f vvvvvvvvvv)
this_args=('' '' 0 0 60000 256 1048576 sd:invalidate x sd:wake:x 1 0 65536 '' 600000 f vvvvvvvvvv)
for variant in base off on; do
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null &
  pid=$!
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
  file=$work/this.lua; args=("${this_args[@]}")
  if [ "$variant" = base ]; then file=$work/base.lua; args=("${base_args[@]}"); fi
  sha=$(redis-cli -p "$port" SCRIPT LOAD "$(cat "$file")")
  keys=("$k:d" "$k:m" "$k:l" "$k:q" "$k:w")
  # This tree's scripts also declare the watch marker and log (keys.rs).
  if [ "$variant" != base ]; then keys+=("$k:k" "$k:x"); fi
  extra=()
  if [ "$variant" = on ]; then keys+=("${quota_keys[@]}"); extra=(1000000 1073741824); fi
  redis-benchmark -p "$port" -n "$n" -c 1 -r 100000000 -q \
    EVALSHA "$sha" "${#keys[@]}" "${keys[@]}" "${args[@]}" "${extra[@]}" >/dev/null 2>&1
  stats=$(redis-cli -p "$port" INFO commandstats)
  per_call=$(grep -o '^cmdstat_evalsha:.*usec_per_call=[0-9.]*' <<<"$stats" | sed 's/.*usec_per_call=//')
  commands=$(grep -v evalsha <<<"$stats" | grep -o '^cmdstat_[a-z]*:calls=[0-9]*' |
    sed 's/cmdstat_//;s/:calls=/ /' | sort | awk -v n="$n" '{printf "%s %g, ", $1, $2 / n}')
  echo "$variant: ${per_call} us of Redis CPU per script; per script: ${commands%, }"
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait "$pid" 2>/dev/null || true
  pid=
done
