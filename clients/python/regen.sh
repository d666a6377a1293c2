#!/usr/bin/env bash
# Regenerates the committed protobuf/gRPC stubs in sessiond/v1/ from ../../proto.
# Run it after any change to proto/sessiond/v1/*.proto and commit the result, so
# that `pip install ./clients/python` never needs protoc.
#
# The grpcio-tools version is pinned: the generated code refuses to load on a
# grpcio older than the tools that generated it, and on a protobuf runtime older
# than the one they bundle. Keep pyproject.toml's lower bounds in step with it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto_dir="$here/../../proto"
out="$here/sessiond/v1"
tools_version="1.85.1"

venv="$(mktemp -d)"
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "grpcio-tools==$tools_version"

gen="$venv/gen"
mkdir -p "$gen"
"$venv/bin/python" -m grpc_tools.protoc -I "$proto_dir" \
  --python_out="$gen" --pyi_out="$gen" --grpc_python_out="$gen" \
  "$proto_dir/sessiond/v1/session.proto" "$proto_dir/sessiond/v1/admin.proto"

# protoc writes absolute imports (`from sessiond.v1 import session_pb2`); make
# them package-relative so the stubs work wherever the package is imported from.
for f in "$gen"/sessiond/v1/*_pb2*.py "$gen"/sessiond/v1/*_pb2.pyi; do
  sed -i -E 's/^from sessiond\.v1 import /from . import /' "$f"
done

rm -f "$out"/*_pb2.py "$out"/*_pb2.pyi "$out"/*_pb2_grpc.py
cp "$gen"/sessiond/v1/*_pb2*.py "$gen"/sessiond/v1/*_pb2.pyi "$out/"
echo "regenerated: $(cd "$out" && ls *_pb2*.py *_pb2.pyi | tr '\n' ' ')"
