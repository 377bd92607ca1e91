#!/usr/bin/env bash
# grpcio-tools' protoc (the one `make generate` uses) over the API's protos and the
# google.rpc status and error details, with the options given: a local plugin and its
# output, for the TypeScript projects (clients/typescript, web). grpcio-tools ships
# google/protobuf/*.proto, googleapis-common-protos google/rpc/*.proto.
#   bash scripts/protoc-api.sh --plugin=protoc-gen-X=PATH --X_out=DIR [--X_opt=...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
read -r tools googleapis <<<"$("$python" -c 'import os, grpc_tools, google.rpc.status_pb2 as s
print(os.path.dirname(grpc_tools.__file__), os.path.dirname(os.path.dirname(os.path.dirname(s.__file__))))')"
exec "$python" -m grpc_tools.protoc -I "$root/proto" -I "$tools/_proto" -I "$googleapis" "$@" \
    "$root"/proto/hpcgate/v1/*.proto google/rpc/status.proto google/rpc/error_details.proto
