#!/usr/bin/env bash
# scripts/run-cluster.sh -- what `make run-cluster` runs: hpcgate in cluster mode on this
# machine (docs/deployment.md). Two replicas sharing state on the local PostgreSQL, with
# HAProxy in front, then waits; Ctrl-C (or TERM) stops the replicas and HAProxy.
# PostgreSQL and Slurm (`make cluster`, done by make first) keep running.
#
# Usage: scripts/run-cluster.sh BIN RUN_USER   (BIN: the venv's bin directory; tokens
#        are printed for RUN_USER, as by `make run`). Run as root, from anywhere.
#
#   127.0.0.1:50060   HAProxy (clients use this)     deploy/haproxy.cfg
#   127.0.0.1:50061   replica-1                      deploy/cluster-replica-1.toml
#   127.0.0.1:50062   replica-2                      deploy/cluster-replica-2.toml
#   127.0.0.1:50069   HAProxy statistics page
#   127.0.0.1:8060    HAProxy for the replicas' HTTP listeners (8061, 8062): Connect,
#                     gRPC-Web and the status page
# Replica logs: .cluster/replica-N.log (JSON lines) in the repository.
set -euo pipefail

if (($# != 2)); then
    echo "usage: $0 BIN RUN_USER" >&2
    exit 2
fi
BIN=$(realpath -- "$1")
readonly BIN RUN_USER=$2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly PROXY=127.0.0.1:50060
readonly REPLICAS=(1 2)
readonly LOG_DIR=$ROOT/.cluster
# What a replica may take to stop: shutdown_grace (5 s) + tasks.stop_timeout (10 s),
# and some slack.
readonly STOP_TIMEOUT=30
readonly READY_TIMEOUT=90

say() {
    printf 'run-cluster: %s\n' "$*" >&2
}

cd "$ROOT"
if [[ $EUID -ne 0 ]]; then
    echo "run-cluster.sh must run as root (PostgreSQL and HAProxy setup; the server starts per-user workers)" >&2
    exit 2
fi

port_taken() {
    (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}

config_of() {
    echo "deploy/cluster-replica-$1.toml"
}

address_of() {
    echo "127.0.0.1:5006$1"
}

declare -A PIDS=()

pid_alive() {
    local stat
    [[ -r /proc/$1/stat ]] || return 1
    stat=$(cut -d ' ' -f 3 "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $stat && $stat != Z && $stat != X ]]
}

stop_all() {
    local n pid start
    trap - INT TERM HUP EXIT
    if ((${#PIDS[@]})); then
        say "stopping replicas"
        for n in "${!PIDS[@]}"; do
            kill -TERM "${PIDS[$n]}" 2>/dev/null || true
        done
        start=$(date +%s)
        for n in "${!PIDS[@]}"; do
            pid=${PIDS[$n]}
            while pid_alive "$pid"; do
                if (($(date +%s) - start >= STOP_TIMEOUT)); then
                    say "replica-$n (pid $pid) still runs after ${STOP_TIMEOUT} s; killing it"
                    kill -KILL "$pid" 2>/dev/null || true
                    break
                fi
                sleep 0.2
            done
            wait "$pid" 2>/dev/null || true
        done
    fi
    bash scripts/haproxy.sh down || true
    say "stopped (PostgreSQL keeps running: scripts/postgres.sh down stops it)"
}

on_signal() {
    echo >&2
    stop_all
    exit 130
}

# ready N: replica N answers the gRPC health check with SERVING (after its first probes).
ready() {
    "$BIN/python" - "$(address_of "$1")" <<'EOF' 2>/dev/null
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

with grpc.insecure_channel(sys.argv[1]) as channel:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
sys.exit(0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1)
EOF
}

# ------------------------------------------------------------------ start ---

bash scripts/postgres.sh up

for addr in "$PROXY" "$(address_of 1)" "$(address_of 2)"; do
    if port_taken "$addr" && ! { [[ $addr == "$PROXY" ]] && bash scripts/haproxy.sh status >/dev/null; }; then
        say "something already listens on $addr (an earlier run-cluster?); stop it first"
        exit 1
    fi
done

mkdir -p "$LOG_DIR"
trap on_signal INT TERM HUP
trap stop_all EXIT
for n in "${REPLICAS[@]}"; do
    # Own session: Ctrl-C reaches only this script, which stops the replicas in order.
    setsid "$BIN/hpcgate-server" --config "$(config_of "$n")" serve \
        </dev/null >"$LOG_DIR/replica-$n.log" 2>&1 &
    PIDS[$n]=$!
    say "replica-$n: pid ${PIDS[$n]} on $(address_of "$n") (log: .cluster/replica-$n.log)"
done

start=$(date +%s)
for n in "${REPLICAS[@]}"; do
    until ready "$n"; do
        if ! pid_alive "${PIDS[$n]}"; then
            say "replica-$n exited while starting; last lines of .cluster/replica-$n.log:"
            tail -n 30 "$LOG_DIR/replica-$n.log" >&2 || true
            exit 1
        fi
        if (($(date +%s) - start >= READY_TIMEOUT)); then
            say "replica-$n is not SERVING after ${READY_TIMEOUT} s; see .cluster/replica-$n.log"
            exit 1
        fi
        sleep 0.5
    done
done
say "both replicas are SERVING"

bash scripts/haproxy.sh up deploy/haproxy.cfg

# Tokens are signed with the key in the replicas' shared state_dir, so any replica's
# configuration serves.
HPCGATE_HTTP_LISTEN=127.0.0.1:8060 HPCGATE_CONFIG=$(config_of 1) bash scripts/run-tokens.sh "$BIN" "$PROXY" "$RUN_USER"
echo "Cluster mode: HAProxy on $PROXY -> replicas $(address_of 1), $(address_of 2)"
echo "  Tokens for the cluster need its configuration (its signing key):"
echo "    $BIN/hpcgate-server --config $(config_of 1) token --user USER --scope read ..."
echo "  HAProxy statistics: http://127.0.0.1:50069/   logs: .cluster/replica-{1,2}.log"
echo "  Without HAProxy (client-side round robin): docs/deployment.md"
echo "Ctrl-C stops the replicas and HAProxy."
echo

# ------------------------------------------------------------------- wait ---

while ((${#PIDS[@]})); do
    # Returns when any replica exits (or at once when a trapped signal arrives).
    set +e
    wait -n "${PIDS[@]}"
    status=$?
    set -e
    for n in "${!PIDS[@]}"; do
        if ! pid_alive "${PIDS[$n]}"; then
            say "replica-$n exited (status $status); last lines of .cluster/replica-$n.log:"
            tail -n 10 "$LOG_DIR/replica-$n.log" >&2 || true
            unset "PIDS[$n]"
        fi
    done
done
say "no replica left"
exit 1
