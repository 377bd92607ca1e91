#!/usr/bin/env bash
# Node.js >= 18 and npm, installed from the distribution when missing (as root), then the
# locked dependencies (npm ci) of a Node project of this repository when its node_modules
# is missing or older than its package-lock.json.
#   bash scripts/node.sh [PROJECT]   PROJECT: clients/typescript (the default; used by
#                                    tests/test_typescript_client.py) or web (`make web`)
set -euo pipefail
cd "$(dirname "$0")/.."
project=${1:-clients/typescript}
project=${project%/}
if [ ! -f "$project/package-lock.json" ]; then
    echo "scripts/node.sh: $project/package-lock.json not found (a project directory of this repository)" >&2
    exit 1
fi
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
stamp=$project/node_modules/.hpcgate-installed
if [ ! -f "$stamp" ] || [ "$project/package-lock.json" -nt "$stamp" ]; then
    (cd "$project" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$stamp"
fi
