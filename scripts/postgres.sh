#!/usr/bin/env bash
# scripts/postgres.sh -- a local PostgreSQL for hpcgate's cluster mode (`make
# run-cluster`, docs/deployment.md) and for the tests that need one, without systemd.
#
# Usage:
#   scripts/postgres.sh [up]           install postgresql-15 if missing, create the
#                                      cluster "hpcgate" once, configure, start, wait
#                                      until ready, create role and database hpcgate
#                                      (root)
#   scripts/postgres.sh down           stop the cluster (root)
#   scripts/postgres.sh status         exit 0 if it answers on 127.0.0.1:55432, 3 if not
#   scripts/postgres.sh dsn [NAME]     print the DSN of database NAME (default hpcgate)
#   scripts/postgres.sh createdb NAME  create database NAME owned by hpcgate; prints its
#                                      DSN; fails if it exists (tests: one per test run)
#   scripts/postgres.sh dropdb NAME    drop database NAME, ending its sessions (FORCE);
#                                      no error if it does not exist
#
# `up` is idempotent: a second run only checks and finishes in about a second.
# createdb/dropdb/dsn/status need no root: they connect as role hpcgate over TCP.
#
# What it creates: a dedicated cluster "15/hpcgate" (pg_createcluster; the Debian
# "main" cluster, if any, is left alone) on 127.0.0.1:55432 only, data in
# /var/lib/postgresql/15/hpcgate, configuration in /etc/postgresql/15/hpcgate (our
# settings in conf.d/hpcgate.conf and pg_hba.conf), log in
# /var/log/postgresql/postgresql-15-hpcgate.log. start.conf is "manual": nothing starts
# it at boot; `up` does.
#
# THIS IS A DEVELOPMENT/TEST CLUSTER: role hpcgate logs in WITHOUT A PASSWORD (trust)
# from local sockets and 127.0.0.1. Production: see docs/deployment.md.
#
# Environment knobs (none required):
#   HPCGATE_POSTGRES_QUIET=1   print only errors
set -euo pipefail

readonly PG_VERSION=15
readonly PG_CLUSTER=hpcgate
readonly PG_HOST=127.0.0.1
readonly PG_PORT=55432
readonly PG_ROLE=hpcgate
readonly PG_DB=hpcgate
readonly PG_BIN=/usr/lib/postgresql/$PG_VERSION/bin
readonly PG_PACKAGES=(postgresql-$PG_VERSION postgresql-client-$PG_VERSION)
readonly CONF_DIR=/etc/postgresql/$PG_VERSION/$PG_CLUSTER
readonly DATA_DIR=/var/lib/postgresql/$PG_VERSION/$PG_CLUSTER
readonly PG_LOG=/var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log
readonly SOCKET_DIR=/run/postgresql
readonly OUT_DIR=/var/log/hpcgate-cluster
readonly APT_LOG=$OUT_DIR/postgres-apt.log
readonly LOCK_FILE=/run/lock/hpcgate-postgres.lock
readonly READY_TIMEOUT=30

QUIET=${HPCGATE_POSTGRES_QUIET:-0}
LOG_NAME=postgres
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# ---------------------------------------------------------------- helpers ---

# die_with_log LOGFILE MESSAGE: fail, showing the end of LOGFILE.
die_with_log() {
    local log=$1
    shift
    printf 'postgres: ERROR: %s\n' "$*" >&2
    if [[ -s $log ]]; then
        printf -- '---- last lines of %s ----\n' "$log" >&2
        tail -n 30 "$log" >&2 || true
        printf -- '----\n' >&2
    fi
    exit 1
}

require_root() {
    if [[ $EUID -ne 0 ]]; then
        echo "postgres.sh $1 must run as root: it installs packages and runs pg_ctlcluster (try: sudo scripts/postgres.sh $1)" >&2
        exit 2
    fi
}

take_lock() {
    mkdir -p "$(dirname "$LOCK_FILE")"
    exec 9>"$LOCK_FILE"
    if ! flock -w 120 9; then
        die "another postgres.sh holds $LOCK_FILE"
    fi
}

# A database name the tests may pass: a plain lower-case identifier, so it needs no
# quoting anywhere (SQL, URIs).
check_name() {
    if [[ ! ${1:-} =~ ^[a-z_][a-z0-9_]{0,62}$ ]]; then
        echo "postgres.sh: database name must match [a-z_][a-z0-9_]* (at most 63 characters), got '${1:-}'" >&2
        exit 2
    fi
}

dsn_of() {
    printf 'postgresql://%s@%s:%s/%s\n' "$PG_ROLE" "$PG_HOST" "$PG_PORT" "$1"
}

ready() {
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2
}

# As the superuser, over the cluster's Unix socket (peer authentication).
psql_admin() {
    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$PG_PORT" \
        -d postgres "$@"
}

# As role hpcgate over TCP (trust on 127.0.0.1): what createdb/dropdb use, no root needed.
psql_role() {
    PGOPTIONS="-c client_min_messages=warning" timeout 60 \
        psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_ROLE" -d postgres "$@"
}

require_ready() {
    if ! ready; then
        echo "postgres.sh: nothing answers on $PG_HOST:$PG_PORT; run: sudo scripts/postgres.sh up" >&2
        exit 3
    fi
}

# pg_ctl_detached ACTION...: pg_ctlcluster for this cluster, with no inherited fds.
pg_ctl_detached() {
    (
        close_fds
        exec pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" "$@" </dev/null
    )
}

running() {
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" status >/dev/null 2>&1
}

# -------------------------------------------------------------- packages ---

ensure_packages() {
    [[ -x $PG_BIN/postgres ]] && command -v pg_ctlcluster >/dev/null && return 0
    say "installing ${PG_PACKAGES[*]} (log: $APT_LOG)"
    mkdir -p "$OUT_DIR"
    # Keep maintainer scripts from starting services (there may be no systemd; the
    # cluster we want is started below, the "main" one the package creates is not).
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        CLEANUP_FILES+=(/usr/sbin/policy-rc.d)
    fi
    if ! apt-get update -q >"$APT_LOG" 2>&1 ||
        ! env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${PG_PACKAGES[@]}" >>"$APT_LOG" 2>&1; then
        die_with_log "$APT_LOG" "could not install ${PG_PACKAGES[*]}"
    fi
    [[ -x $PG_BIN/postgres ]] || die "installed ${PG_PACKAGES[*]} but $PG_BIN/postgres is missing"
}

# --------------------------------------------------------------- cluster ---

ensure_cluster() {
    if [[ -d $CONF_DIR ]]; then
        [[ -f $DATA_DIR/PG_VERSION ]] ||
            die "$CONF_DIR exists but $DATA_DIR holds no cluster; remove it with: pg_dropcluster $PG_VERSION $PG_CLUSTER"
        return 0
    fi
    say "creating cluster $PG_VERSION/$PG_CLUSTER on port $PG_PORT"
    mkdir -p "$OUT_DIR"
    if ! pg_createcluster "$PG_VERSION" "$PG_CLUSTER" -p "$PG_PORT" --start-conf=manual \
        --locale=C.UTF-8 >"$OUT_DIR/postgres-createcluster.log" 2>&1; then
        die_with_log "$OUT_DIR/postgres-createcluster.log" "pg_createcluster failed"
    fi
}

# install_conf FILE MODE CONTENT: install CONTENT as FILE (owned by postgres) unless it
# already holds exactly that; sets FILE_CHANGED to 1 or 0. (Called plainly, not in an
# `if`, so that set -e still covers it.)
FILE_CHANGED=0
install_conf() {
    local file=$1 mode=$2 content=$3 tmp
    FILE_CHANGED=0
    if [[ -f $file ]] && [[ $(<"$file") == "$content" ]]; then
        return 0
    fi
    tmp=$(mktemp "$file.XXXXXX")
    CLEANUP_FILES+=("$tmp")
    printf '%s\n' "$content" >"$tmp"
    chmod "$mode" "$tmp"
    chown postgres:postgres "$tmp"
    mv -f -- "$tmp" "$file"
    FILE_CHANGED=1
}

# Sets CONF_CHANGE to what the running server needs: "restart" (postgresql.conf
# settings), "reload" (pg_hba.conf only), or "".
CONF_CHANGE=""
configure() {
    local settings hba
    # Debian's postgresql.conf ends with include_dir = 'conf.d'; the port stays where
    # pg_createcluster put it (postgresql.conf), which pg_lsclusters reads.
    settings=$(
        cat <<'EOF'
# Written by scripts/postgres.sh (hpcgate dev/test cluster); rewritten on every `up`.
listen_addresses = '127.0.0.1'
# Each replica keeps a pool (state.pool_size, default 10) plus a LISTEN connection;
# tests create many short-lived servers.
max_connections = 200
EOF
    )
    hba=$(
        cat <<EOF
# Written by scripts/postgres.sh; rewritten on every \`up\`.
# DEVELOPMENT/TEST CLUSTER ONLY: role $PG_ROLE logs in without a password (trust)
# from local sockets and 127.0.0.1. Never use this in production (docs/deployment.md).
# TYPE  DATABASE  USER      ADDRESS         METHOD
local   all       postgres                  peer
local   all       $PG_ROLE                   trust
host    all       $PG_ROLE   127.0.0.1/32    trust
local   all       all                       peer
host    all       all       127.0.0.1/32    scram-sha-256
EOF
    )
    CONF_CHANGE=""
    mkdir -p "$CONF_DIR/conf.d"
    install_conf "$CONF_DIR/conf.d/hpcgate.conf" 0644 "$settings"
    if ((FILE_CHANGED)); then
        CONF_CHANGE=restart
    fi
    install_conf "$CONF_DIR/pg_hba.conf" 0640 "$hba"
    if ((FILE_CHANGED)); then
        CONF_CHANGE=${CONF_CHANGE:-reload}
    fi
}

wait_ready() {
    local start
    start=$(date +%s)
    until ready; do
        if (($(date +%s) - start >= READY_TIMEOUT)); then
            die_with_log "$PG_LOG" "PostgreSQL did not answer on $PG_HOST:$PG_PORT within ${READY_TIMEOUT} s"
        fi
        sleep 0.2
    done
}

start_cluster() {
    local change=$1
    # Without systemd nothing recreates /run/postgresql after a reboot.
    install -d -m 2775 -o postgres -g postgres "$SOCKET_DIR"
    if running; then
        case $change in
            restart)
                say "configuration changed; restarting"
                pg_ctl_detached restart -m fast ||
                    die_with_log "$PG_LOG" "pg_ctlcluster restart failed"
                ;;
            reload)
                say "pg_hba.conf changed; reloading"
                pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" reload
                ;;
        esac
    else
        say "starting cluster $PG_VERSION/$PG_CLUSTER"
        # pg_ctlcluster runs pg_ctl directly when systemd is not running (as root it
        # would otherwise hand over to systemctl, which is fine too).
        pg_ctl_detached start ||
            die_with_log "$PG_LOG" "pg_ctlcluster $PG_VERSION $PG_CLUSTER start failed"
    fi
    wait_ready
}

ensure_role_and_db() {
    psql_admin <<EOF
SELECT 'CREATE ROLE $PG_ROLE LOGIN CREATEDB'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') \\gexec
ALTER ROLE $PG_ROLE LOGIN CREATEDB;
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_ROLE'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB') \\gexec
EOF
}

# -------------------------------------------------------------- commands ---

cmd_up() {
    ensure_packages
    ensure_cluster
    configure
    start_cluster "$CONF_CHANGE"
    ensure_role_and_db
    say "ready: $(dsn_of "$PG_DB")"
}

cmd_down() {
    if running; then
        say "stopping cluster $PG_VERSION/$PG_CLUSTER"
        pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop -m fast
    else
        say "cluster $PG_VERSION/$PG_CLUSTER is not running"
    fi
}

cmd_createdb() {
    local name=$1
    check_name "$name"
    require_ready
    if [[ -n $(psql_role -tA -c "SELECT 1 FROM pg_database WHERE datname = '$name'") ]]; then
        echo "postgres.sh: database $name already exists (drop it first: scripts/postgres.sh dropdb $name)" >&2
        exit 1
    fi
    # Connected as hpcgate (CREATEDB), so hpcgate owns it.
    psql_role -c "CREATE DATABASE $name OWNER $PG_ROLE"
    dsn_of "$name"
}

cmd_dropdb() {
    local name=$1
    check_name "$name"
    if [[ $name == "$PG_DB" || $name == postgres || $name == template0 || $name == template1 ]]; then
        echo "postgres.sh: refusing to drop $name" >&2
        exit 2
    fi
    require_ready
    psql_role -c "DROP DATABASE IF EXISTS $name WITH (FORCE)"
}

usage() {
    cat <<EOF
usage: $0 [up|down|status|dsn [NAME]|createdb NAME|dropdb NAME]
EOF
}

main() {
    local cmd=${1:-up}
    case $cmd in
        -h | --help | help)
            usage
            ;;
        up)
            require_root up
            take_lock
            cmd_up
            ;;
        down)
            require_root down
            take_lock
            cmd_down
            ;;
        status)
            if ready; then
                echo "postgres: $PG_VERSION/$PG_CLUSTER answers on $PG_HOST:$PG_PORT"
            else
                echo "postgres: nothing answers on $PG_HOST:$PG_PORT"
                exit 3
            fi
            ;;
        dsn)
            local name=${2:-$PG_DB}
            check_name "$name"
            dsn_of "$name"
            ;;
        createdb | dropdb)
            if (($# != 2)); then
                usage >&2
                exit 2
            fi
            "cmd_$cmd" "$2"
            ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
