#!/usr/bin/env bash
# Tests of the Python client (and of examples/python) against a real sessiond.
#
# Run from anywhere, after the server binary is built:
#   cargo build --bin sessiond && clients/python/run-tests.sh [pytest args]
# SESSIOND_BIN overrides the binary (default: <repo>/target/debug/sessiond).
# A fresh virtualenv is made at each run, so the package is tested exactly as
# `pip install ./clients/python` installs it (committed stubs, no protoc).
# First it checks that sessiond/client.py is what gen_sync.py generates from
# sessiond/aio.py.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$repo/target/py-venv"
python="${PYTHON:-python3}"

rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "$repo/clients/python[test]"
# pip builds in the source tree; leave it as it was.
rm -rf "$repo/clients/python/build" "$repo/clients/python/sessiond_client.egg-info"

# The blocking client is generated from the asyncio one: a hand edit of
# client.py, or an aio.py change without regenerating, fails here.
"$venv/bin/python" "$repo/clients/python/gen_sync.py" --check

export SESSIOND_BIN="${SESSIOND_BIN:-$repo/target/debug/sessiond}"
cd "$repo"
# -p no:cacheprovider: no .pytest_cache left in the work tree.
exec "$venv/bin/python" -m pytest -p no:cacheprovider clients/python/tests "$@"
