#!/usr/bin/env bash
# What WatchSession costs update.lua on Redis: the commands each run makes
# (INFO commandstats, exact) and the Redis CPU per script (usec_per_call,
# noisy on a shared machine), for BASE's script, this tree's on a session
# nobody watches ("unwatched": its marker key absent) and on a watched one
# ("watched": the marker set, so the write is logged to the stream). Each
# run writes one 11-byte field of one session N times.
#
#   scripts/watch-script-cost.sh [BASE] [N]     (BASE: a git revision, default main)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-main}
n=${2:-20000}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pid=
trap 'kill ${pid:-} 2>/dev/null; rm -rf "$work"' EXIT
lua=src/store/redis
# As redis.rs assembles them: the PUBLISH line, [watch.lua,] the prelude,
# idempotency.lua, ops.lua, update.lua.
printf "local PUBLISH = 'PUBLISH'\n%s\n%s\n%s\n%s" "$(git show "$base:$lua/prelude.lua")" "$(git show "$base:$lua/idempotency.lua")" \
  "$(git show "$base:$lua/ops.lua")" "$(git show "$base:$lua/update.lua")" >"$work/base.lua"
printf "local PUBLISH = 'PUBLISH'\n%s\n%s\n%s\n%s\n%s" "$(cat $lua/watch.lua)" "$(cat $lua/prelude.lua)" "$(cat $lua/idempotency.lua)" \
  "$(cat $lua/ops.lua)" "$(cat $lua/update.lua)" >"$work/this.lua"
k='sd:{default/user-1}'
# update.lua's 15 fixed arguments (see its header), then one field.
args=('' '' 0 0 60000 256 1048576 sd:invalidate default/user-1 sd:wake:x 1 0 65536 '' 600000 f vvvvvvvvvv)
for variant in base unwatched watched; do
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null &
  pid=$!
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
  file=$work/this.lua
  if [ "$variant" = base ]; then file=$work/base.lua; fi
  if [ "$variant" = watched ]; then redis-cli -p "$port" SET "$k:k" sd:invalidate >/dev/null; fi
  sha=$(redis-cli -p "$port" SCRIPT LOAD "$(cat "$file")")
  redis-cli -p "$port" CONFIG RESETSTAT >/dev/null
  keys=("$k:d" "$k:m" "$k:l" "$k:q" "$k:w")
  # This tree's scripts also declare the watch marker and log (keys.rs).
  if [ "$variant" != base ]; then keys+=("$k:k" "$k:x"); fi
  redis-benchmark -p "$port" -n "$n" -c 1 -q \
    EVALSHA "$sha" "${#keys[@]}" "${keys[@]}" "${args[@]}" >/dev/null 2>&1
  stats=$(redis-cli -p "$port" INFO commandstats)
  per_call=$(grep -o '^cmdstat_evalsha:.*usec_per_call=[0-9.]*' <<<"$stats" | sed 's/.*usec_per_call=//')
  commands=$(grep -v 'evalsha\|config' <<<"$stats" | grep -o '^cmdstat_[a-z]*:calls=[0-9]*' |
    sed 's/cmdstat_//;s/:calls=/ /' | sort | awk -v n="$n" '{printf "%s %g, ", $1, $2 / n}')
  echo "$variant: ${per_call} us of Redis CPU per script; per script: ${commands%, }"
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait "$pid" 2>/dev/null || true
  pid=
done
