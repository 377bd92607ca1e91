#!/usr/bin/env bash
# Node.js >= 18 and npm for the TypeScript client (clients/typescript), installed from the
# distribution when missing (as root), then its locked dependencies (npm ci) when
# node_modules is missing or older than package-lock.json. Used by
# tests/test_typescript_client.py.
set -euo pipefail
cd "$(dirname "$0")/.."
need=18
usable() {
    command -v node >/dev/null && command -v npm >/dev/null &&
        [ "$(node -p 'process.versions.node.split(".")[0]')" -ge "$need" ]
}
if ! usable; then
    if [ "$(id -u)" != 0 ]; then
        echo "scripts/node.sh: Node.js >= $need and npm are needed (as root: apt-get install nodejs npm)" >&2
        exit 1
    fi
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null
    usable || { echo "scripts/node.sh: the distribution's Node.js is older than $need" >&2; exit 1; }
fi
project=clients/typescript
stamp=$project/node_modules/.hpcgate-installed
if [ ! -f "$stamp" ] || [ "$project/package-lock.json" -nt "$stamp" ]; then
    (cd "$project" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$stamp"
fi
