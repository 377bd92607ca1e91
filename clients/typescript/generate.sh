#!/usr/bin/env bash
# TypeScript types and grpc-js service clients from the protos, with ts-proto run as a local
# protoc plugin (scripts/protoc-api.sh), into src/gen/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$here/src/gen"
mkdir -p "$here/src/gen"
# forceLong=string: int64/uint64 fields are strings in TypeScript (JavaScript numbers lose
# precision past 2^53), as in the API's JSON mapping.
bash "$here/../../scripts/protoc-api.sh" \
    --plugin=protoc-gen-ts_proto="$here/node_modules/.bin/protoc-gen-ts_proto" \
    --ts_proto_out="$here/src/gen" \
    --ts_proto_opt=outputServices=grpc-js,env=node,forceLong=string,esModuleInterop=true,useOptionals=none,oneof=unions-value
