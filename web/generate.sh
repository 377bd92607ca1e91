#!/usr/bin/env bash
# TypeScript messages and service descriptors from the protos, with protoc-gen-es run as a
# local protoc plugin (scripts/protoc-api.sh), into src/gen/. Connect clients
# (@connectrpc/connect v2) are made from the generated service descriptors.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$here/src/gen"
mkdir -p "$here/src/gen"
# target=ts: TypeScript sources, type-checked by tsc and bundled by esbuild. The well-known
# types (google/protobuf/*) are not generated: they come from @bufbuild/protobuf/wkt.
bash "$here/../scripts/protoc-api.sh" \
    --plugin=protoc-gen-es="$here/node_modules/.bin/protoc-gen-es" \
    --es_out="$here/src/gen" \
    --es_opt=target=ts
