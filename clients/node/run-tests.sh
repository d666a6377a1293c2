#!/usr/bin/env bash
# Tests of the Node client (@sessiond/client) against a real sessiond.
#
#   clients/node/run-tests.sh            (from anywhere; CI runs it from the repo root)
#
# Needs the server built first (cargo build); SESSIOND_BIN overrides its path
# (default: <repo>/target/debug/sessiond). Each test file starts its own
# sessiond on a free 127.0.0.1 port with an embedded store in a temp dir.
#
# 1. npm ci: the client's dependencies exactly as package-lock.json pins them.
# 2. The package is installed from its folder into a scratch project, packed
#    as a registry tarball would be (--install-links: a copy, not a symlink),
#    which proves it installs and carries everything it needs (code, types,
#    protos); the tests then run the examples and one smoke test on that copy.
# 3. node --test runs every test/*.test.js and prints its summary.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export SESSIOND_BIN="${SESSIOND_BIN:-$REPO/target/debug/sessiond}"
if [[ ! -x "$SESSIOND_BIN" ]]; then
  echo "run-tests.sh: no sessiond binary at $SESSIOND_BIN: run 'cargo build' first or set SESSIOND_BIN" >&2
  exit 1
fi

echo "== npm ci (clients/node)"
cd "$HERE"
npm ci --no-audit --no-fund

SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/sessiond-client-install.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT
echo "== npm install $HERE into a scratch project"
(
  cd "$SCRATCH"
  npm init -y >/dev/null
  npm install --no-audit --no-fund --install-links "$HERE"
  node -e "const c = require('@sessiond/client'); if (typeof c.Client !== 'function') process.exit(1);"
)
export SESSIOND_CLIENT_NODE_MODULES="$SCRATCH/node_modules"

echo "== node --test (sessiond: $SESSIOND_BIN)"
node --test --test-timeout=180000 test/*.test.js
