#!/usr/bin/env bash
# scripts/haproxy.sh -- run HAProxy in front of local hpcgate replicas (`make
# run-cluster`, docs/deployment.md), as a plain daemon, without systemd.
#
# Usage:
#   scripts/haproxy.sh up CONFIG   install Debian's haproxy if missing (root), check
#                                  CONFIG, start `haproxy -D -f CONFIG -p PIDFILE`; if it
#                                  already runs, reload it gracefully (-sf) when CONFIG
#                                  changed, else do nothing
#   scripts/haproxy.sh down        stop it (TERM, up to 10 s, then KILL), by pid file
#   scripts/haproxy.sh status      exit 0 if it runs, 3 if not
#
# Production uses Debian's own haproxy.service with the configuration in
# /etc/haproxy/haproxy.cfg instead (docs/deployment.md).
#
# Files: pid file $HPCGATE_HAPROXY_PIDFILE, default /run/hpcgate-haproxy.pid as root
# (else /tmp/hpcgate-haproxy-UID.pid); beside it NAME.conf records which configuration
# (path and checksum) runs. HAProxy in daemon mode logs nothing of its own here.
set -euo pipefail

if [[ $EUID -eq 0 ]]; then
    DEFAULT_PIDFILE=/run/hpcgate-haproxy.pid
else
    DEFAULT_PIDFILE=/tmp/hpcgate-haproxy-$EUID.pid
fi
readonly PIDFILE=${HPCGATE_HAPROXY_PIDFILE:-$DEFAULT_PIDFILE}
readonly STAMP=${PIDFILE%.pid}.conf
readonly OUT_DIR=/var/log/hpcgate-cluster
readonly APT_LOG=$OUT_DIR/haproxy-apt.log
readonly STOP_TIMEOUT=10

QUIET=0
LOG_NAME=haproxy
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# pid_is_haproxy PID: a live (non-zombie) process running the haproxy binary.
pid_is_haproxy() {
    local pid=$1 stat exe
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/stat ]] || return 1
    stat=$(cut -d ' ' -f 3 "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ -n $stat && $stat != Z && $stat != X ]] || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    exe=${exe% (deleted)}
    [[ ${exe##*/} == haproxy ]]
}

# Live haproxy pids named in the pid file (after a reload, old processes that still
# finish their connections are listed too).
live_pids() {
    local pid
    [[ -r $PIDFILE ]] || return 0
    while read -r pid; do
        if pid_is_haproxy "$pid"; then
            echo "$pid"
        fi
    done <"$PIDFILE"
}

ensure_haproxy() {
    command -v haproxy >/dev/null && return 0
    if [[ $EUID -ne 0 ]]; then
        echo "haproxy is not installed; install it as root (sudo scripts/haproxy.sh up CONFIG, or apt-get install haproxy)" >&2
        exit 2
    fi
    say "installing haproxy (log: $APT_LOG)"
    mkdir -p "$OUT_DIR"
    # Keep the package's maintainer scripts from starting Debian's haproxy service.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        CLEANUP_FILES+=(/usr/sbin/policy-rc.d)
    fi
    local -a apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends haproxy)
    if ! "${apt[@]}" >"$APT_LOG" 2>&1; then
        if ! apt-get update -q >>"$APT_LOG" 2>&1 || ! "${apt[@]}" >>"$APT_LOG" 2>&1; then
            tail -n 30 "$APT_LOG" >&2 || true
            die "could not install haproxy"
        fi
    fi
}

cmd_up() {
    local config=$1 stamp pids
    [[ -r $config ]] || die "cannot read $config"
    config=$(realpath -- "$config")
    ensure_haproxy
    if ! haproxy -c -q -f "$config"; then
        die "$config does not pass haproxy -c"
    fi
    stamp="$config $(sha256sum <"$config" | cut -d ' ' -f 1)"
    pids=$(live_pids)
    if [[ -n $pids ]]; then
        if [[ -r $STAMP && $(<"$STAMP") == "$stamp" ]]; then
            say "already running (pid $(echo $pids)) with $config"
            return 0
        fi
        say "reloading with $config (old pids $(echo $pids) finish their connections)"
        # shellcheck disable=SC2086 # one argument per pid
        (close_fds; exec haproxy -D -f "$config" -p "$PIDFILE" -sf $pids </dev/null)
    else
        rm -f -- "$PIDFILE"
        (close_fds; exec haproxy -D -f "$config" -p "$PIDFILE" </dev/null)
    fi
    printf '%s\n' "$stamp" >"$STAMP"
    pids=$(live_pids)
    [[ -n $pids ]] || die "haproxy did not start (pid file $PIDFILE)"
    say "running (pid $(echo $pids)) with $config"
}

cmd_down() {
    local pids pid start
    pids=$(live_pids)
    if [[ -z $pids ]]; then
        say "not running"
        rm -f -- "$PIDFILE" "$STAMP"
        return 0
    fi
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    start=$(date +%s)
    for pid in $pids; do
        while pid_is_haproxy "$pid"; do
            if (($(date +%s) - start >= STOP_TIMEOUT)); then
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.1
        done
    done
    rm -f -- "$PIDFILE" "$STAMP"
    say "stopped (pid $(echo $pids))"
}

usage() {
    echo "usage: $0 up CONFIG | down | status"
}

main() {
    case ${1:-} in
        up)
            if (($# != 2)); then
                usage >&2
                exit 2
            fi
            cmd_up "$2"
            ;;
        down)
            cmd_down
            ;;
        status)
            local pids
            pids=$(live_pids)
            if [[ -n $pids ]]; then
                echo "haproxy: running (pid $(echo $pids))"
            else
                echo "haproxy: not running"
                exit 3
            fi
            ;;
        -h | --help | help)
            usage
            ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
