#!/usr/bin/env bash
# TypeScript types and grpc-js service clients from the protos, with ts-proto run as a local
# protoc plugin by grpcio-tools' protoc (the one `make generate` uses), into src/gen/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
# grpcio-tools ships google/protobuf/*.proto, googleapis-common-protos google/rpc/*.proto.
read -r tools googleapis <<<"$("$python" -c 'import os, grpc_tools, google.rpc.status_pb2 as s
print(os.path.dirname(grpc_tools.__file__), os.path.dirname(os.path.dirname(os.path.dirname(s.__file__))))')"
rm -rf "$here/src/gen"
mkdir -p "$here/src/gen"
# forceLong=string: int64/uint64 fields are strings in TypeScript (JavaScript numbers lose
# precision past 2^53), as in the API's JSON mapping.
"$python" -m grpc_tools.protoc \
    -I "$root/proto" -I "$tools/_proto" -I "$googleapis" \
    --plugin=protoc-gen-ts_proto="$here/node_modules/.bin/protoc-gen-ts_proto" \
    --ts_proto_out="$here/src/gen" \
    --ts_proto_opt=outputServices=grpc-js,env=node,forceLong=string,esModuleInterop=true,useOptionals=none,oneof=unions-value \
    "$root"/proto/hpcgate/v1/*.proto google/rpc/status.proto google/rpc/error_details.proto
