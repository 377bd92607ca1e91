#!/usr/bin/env bash
# TypeScript messages and service descriptors from the protos, with protoc-gen-es run as a
# local protoc plugin by grpcio-tools' protoc (the one `make generate` uses), into src/gen/.
# Connect clients (@connectrpc/connect v2) are made from the generated service descriptors.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
# grpcio-tools ships google/protobuf/*.proto, googleapis-common-protos google/rpc/*.proto.
read -r tools googleapis <<<"$("$python" -c 'import os, grpc_tools, google.rpc.status_pb2 as s
print(os.path.dirname(grpc_tools.__file__), os.path.dirname(os.path.dirname(os.path.dirname(s.__file__))))')"
rm -rf "$here/src/gen"
mkdir -p "$here/src/gen"
# target=ts: TypeScript sources, type-checked by tsc and bundled by esbuild. The well-known
# types (google/protobuf/*) are not generated: they come from @bufbuild/protobuf/wkt.
"$python" -m grpc_tools.protoc \
    -I "$root/proto" -I "$tools/_proto" -I "$googleapis" \
    --plugin=protoc-gen-es="$here/node_modules/.bin/protoc-gen-es" \
    --es_out="$here/src/gen" \
    --es_opt=target=ts \
    "$root"/proto/hpcgate/v1/*.proto google/rpc/status.proto google/rpc/error_details.proto
