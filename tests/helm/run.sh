#!/usr/bin/env bash
# Lints, renders and validates the Helm chart in helm/sessiond, offline.
#
# Needs only Python 3.11+ and the Python package index: Helm itself comes from
# the helm-python-sdk wheel (Helm's Go SDK as a shared library), the Kubernetes
# schemas from kubernetes-validate. No cluster, no helm binary, no docker.
#
# Run from anywhere: bash tests/helm/run.sh [extra pytest arguments]
# The virtualenv lives in target/helm-venv and is reused while
# tests/helm/requirements.txt is unchanged.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

python="${PYTHON:-python3}"
venv="target/helm-venv"
requirements="tests/helm/requirements.txt"
stamp="$venv/.requirements.txt"

export PIP_DISABLE_PIP_VERSION_CHECK=1
export PYTHONDONTWRITEBYTECODE=1

# A venv whose interpreter no longer starts (e.g. Python was upgraded) is rebuilt.
if [[ -d "$venv" ]] && ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "run.sh: $venv is broken, rebuilding it" >&2
    rm -rf "$venv"
fi
if [[ ! -x "$venv/bin/python" ]]; then
    mkdir -p target
    "$python" -m venv "$venv"
fi
if ! cmp -s "$requirements" "$stamp"; then
    "$venv/bin/python" -m pip install --quiet --requirement "$requirements"
    cp "$requirements" "$stamp"
fi

# pytest prints its own summary line last (e.g. "===== 96 passed in 2.01s =====").
exec "$venv/bin/python" -m pytest -p no:cacheprovider tests/helm "$@"
