#!/usr/bin/env bash
# scripts/cluster.sh -- bring up a real single-node Slurm cluster for hpcgate's
# tests and `make run` (munge, MariaDB, slurmdbd, slurmctld, slurmd), without
# systemd. Must run as root.
#
# Usage:
#   scripts/cluster.sh [up]            install missing packages, write configs, start
#                                      everything, create users/accounts, wait until ready
#   scripts/cluster.sh status          one line per daemon; exit 0 if all run, 3 otherwise
#   scripts/cluster.sh start DAEMON    start one daemon and wait until it answers
#   scripts/cluster.sh stop DAEMON     TERM, up to 10 s, then KILL; removes the pid file
#   scripts/cluster.sh restart DAEMON
#   scripts/cluster.sh down            stop all daemons (reverse dependency order)
#   DAEMON is one of: munge mariadb slurmdbd slurmctld slurmd
#
# `up` is idempotent: a second run only checks and finishes in about a second.
# Stale pid files and dead daemons are detected and the daemons restarted.
#
# What it creates:
#   cluster "hpcgate", one node named `hostname -s` (CPUs=8 RealMemory=8000,
#   SlurmdParameters=config_overrides), partitions debug (default, 1 h) and
#   long (2 days); POSIX users alice and bob (own primary groups, home 0700,
#   both in group hpcgate-test); Slurm accounts alpha (alice, bob, root) and
#   beta (bob); alice defaults to alpha, bob to beta.
#
# Files: templates in scripts/cluster/*.in rendered to /etc/slurm/slurm.conf
# and /etc/slurm/slurmdbd.conf (0600, slurm); pid files in /run/slurm,
# /run/munge, /run/mysqld; logs in /var/log/slurm/{slurmctld,slurmd,slurmdbd}.log,
# /var/log/munge/munged.log, /var/log/mysql/error.log.
#
# Environment knobs (none required):
#   HPCGATE_CLUSTER_QUIET=1   print only errors and a one-line summary
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
readonly TEMPLATE_DIR="$SCRIPT_DIR/cluster"

readonly CLUSTER=hpcgate
NODE=$(hostname -s)
readonly NODE
readonly NODE_CPUS=8
readonly NODE_MEM=8000
readonly SLURM_USER=slurm
readonly ETC_DIR=/etc/slurm
readonly RUN_DIR=/run/slurm
readonly LOG_DIR=/var/log/slurm
readonly STATE_DIR=/var/lib/slurm/slurmctld
readonly SPOOL_DIR=/var/lib/slurm/slurmd
readonly DB_NAME=slurm_acct_db
readonly DB_USER=slurm
readonly MYSQL_RUN=/run/mysqld
readonly MYSQL_DATA=/var/lib/mysql
readonly MYSQL_LOG=/var/log/mysql/error.log
readonly MUNGE_KEY=/etc/munge/munge.key
readonly OUT_DIR=/var/log/hpcgate-cluster
readonly APT_LOG=$OUT_DIR/apt.log
readonly LOCK_FILE=/run/lock/hpcgate-cluster.lock
# The controller's hook that tells gateways of job starts and ends (a copy: the source
# tree may not be readable by SlurmUser).
readonly HOOK=/usr/local/libexec/hpcgate/slurm-hook
readonly HOOK_SOURCE=$SCRIPT_DIR/../server/hpcgate/server/slurm/hook.py

readonly DAEMONS=(munge mariadb slurmdbd slurmctld slurmd)
readonly PACKAGES=(munge mariadb-server slurmctld slurmd slurmdbd slurm-client)
readonly TEST_USERS=(alice bob)
readonly SERVICE_USER=hpcgate
readonly SHARED_GROUP=hpcgate-test

QUIET=${HPCGATE_CLUSTER_QUIET:-0}
LOG_NAME=cluster
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
CTLD_STARTED_AT=""
SLURM_CONF_CHANGED=0
DBD_CONF_CHANGED=0

# ---------------------------------------------------------------- helpers ---

# die_with_log LOGFILE MESSAGE: fail, showing the end of LOGFILE and, for a
# daemon, of what it printed on stdout/stderr while starting.
die_with_log() {
    local log=$1 out f
    shift
    printf 'cluster: ERROR: %s\n' "$*" >&2
    out=$OUT_DIR/$(basename "$log" .log).out
    for f in "$log" "$out"; do
        if [[ -s $f ]]; then
            printf -- '---- last lines of %s ----\n' "$f" >&2
            tail -n 30 "$f" >&2 || true
            printf -- '----\n' >&2
        elif [[ $f == "$log" ]]; then
            printf 'cluster: (nothing in %s)\n' "$log" >&2
        fi
    done
    exit 1
}

elapsed_since() {
    awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'
}

# Client commands get a hard timeout so a wedged daemon cannot hang us.
q() {
    timeout 20 "$@"
}

require_root() {
    if [[ $EUID -ne 0 ]]; then
        echo "cluster.sh must run as root: it installs packages, writes /etc/slurm and starts daemons (try: sudo scripts/cluster.sh up)" >&2
        exit 2
    fi
}

take_lock() {
    mkdir -p "$(dirname "$LOCK_FILE")"
    exec 9>"$LOCK_FILE"
    if ! flock -w 120 9; then
        die "another cluster.sh holds $LOCK_FILE"
    fi
}

is_daemon() {
    local d
    for d in "${DAEMONS[@]}"; do
        [[ $d == "$1" ]] && return 0
    done
    return 1
}

pidfile_of() {
    case $1 in
        munge) echo /run/munge/munged.pid ;;
        mariadb) echo "$MYSQL_RUN/mysqld.pid" ;;
        *) echo "$RUN_DIR/$1.pid" ;;
    esac
}

logfile_of() {
    case $1 in
        munge) echo /var/log/munge/munged.log ;;
        mariadb) echo "$MYSQL_LOG" ;;
        *) echo "$LOG_DIR/$1.log" ;;
    esac
}

# Executable basenames a live daemon may have (Debian installs slurm*-wlm
# behind /usr/sbin/slurm* alternatives symlinks).
exes_of() {
    case $1 in
        munge) echo munged ;;
        mariadb) echo mariadbd mysqld ;;
        *) echo "$1 $1-wlm" ;;
    esac
}

# pid_alive PID: true if the process exists and is not a zombie.
pid_alive() {
    local pid=$1 stat
    [[ -r /proc/$pid/stat ]] || return 1
    stat=$(cut -d ' ' -f 3 "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ -n $stat && $stat != Z && $stat != X ]]
}

# pid_is DAEMON PID: true if PID is a live process running DAEMON's binary.
pid_is() {
    local d=$1 pid=$2 exe base e
    pid_alive "$pid" || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    exe=${exe% (deleted)}
    base=${exe##*/}
    for e in $(exes_of "$d"); do
        [[ $base == "$e" ]] && return 0
    done
    return 1
}

# daemon_pid DAEMON: print the pid of the running daemon, or fail.
# The pid file is trusted only if it names a live process of the right binary;
# otherwise fall back to looking the binary up by exact name.
daemon_pid() {
    local d=$1 pidf pid e
    pidf=$(pidfile_of "$d")
    if [[ -r $pidf ]]; then
        pid=$(tr -dc '0-9' <"$pidf" 2>/dev/null || true)
        if [[ -n $pid ]] && pid_is "$d" "$pid"; then
            echo "$pid"
            return 0
        fi
    fi
    for e in $(exes_of "$d"); do
        for pid in $(pgrep -x "$e" 2>/dev/null || true); do
            # slurmd/slurmdbd/... children (e.g. forked helpers) share the
            # name; pick the one whose parent is not the same daemon.
            if pid_is "$d" "$pid"; then
                local ppid
                ppid=$(awk '{ print $4 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
                if [[ $ppid != 0 ]] && pid_is "$d" "$ppid"; then
                    continue
                fi
                echo "$pid"
                return 0
            fi
        done
    done
    return 1
}

# spawn OUT CMD...: run CMD detached (new session, stdio to OUT, no inherited
# fds) and wait for it; for daemons that fork themselves into the background.
spawn() {
    local out=$1
    shift
    (
        close_fds
        exec setsid "$@" </dev/null >"$out" 2>&1
    )
}

# spawn_bg OUT CMD...: like spawn, for programs that stay in the foreground.
# The background subshell itself becomes CMD, so no shell of ours lingers.
spawn_bg() {
    local out=$1
    shift
    (
        close_fds
        exec setsid "$@" </dev/null >"$out" 2>&1
    ) &
    disown $! 2>/dev/null || true
}

# wait_until TIMEOUT DAEMON CHECK...: poll CHECK until it succeeds. Fails
# early if DAEMON is given and its process has gone away.
wait_until() {
    local timeout=$1 d=$2 start
    shift 2
    start=$(date +%s)
    while true; do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if (($(date +%s) - start >= timeout)); then
            return 1
        fi
        if [[ -n $d ]] && (($(date +%s) - start >= 3)) && ! daemon_pid "$d" >/dev/null; then
            return 1
        fi
        sleep 0.2
    done
}

# ------------------------------------------------------------- readiness ---

# Readiness checks: succeed when the daemon answers; on failure they say why
# on stderr (wait_until discards that, start_daemon shows it on timeout).
munge_ok() {
    munge -n </dev/null | unmunge >/dev/null
}

mariadb_ok() {
    mariadb-admin --no-defaults --socket="$MYSQL_RUN/mysqld.sock" -uroot ping >/dev/null
}

# Also keeps the answer (cluster|controlhost lines) in CLUSTER_LIST, so `up`
# need not ask slurmdbd again: each sacctmgr call costs ~0.2 s.
CLUSTER_LIST=""
slurmdbd_ok() {
    CLUSTER_LIST=$(q sacctmgr -n -P list cluster format=cluster,controlhost)
}

slurmctld_ok() {
    local out
    out=$(q scontrol ping 2>&1 || true)
    [[ $out == *"is UP"* ]] || { printf '%s\n' "$out" | head -n 3 >&2; return 1; }
}

# slurmctld's main scheduler has run at least once. A fresh slurmctld starts
# it ~4 s after start-up; jobs submitted before then wait for it.
scheduler_ok() {
    local cycles
    cycles=$(q sdiag | awk '/Main schedule statistics/ { m = 1 } m && /Total cycles:/ { print $3; exit }')
    [[ ${cycles:-0} -ge 1 ]]
}

node_state() {
    q sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null | head -n 1
}

# Node answers and is usable: idle/mix/alloc/comp, no '*' (not responding),
# no drain/down/fail.
node_ok() {
    local s
    s=$(node_state)
    case $s in
        idle | mix | alloc | comp | resv | plnd) return 0 ;;
        *) return 1 ;;
    esac
}

node_responding() {
    local s
    s=$(node_state)
    [[ -n $s && $s != *'*' ]]
}

# slurmctld has registered with slurmdbd (the cluster has a control host).
cluster_registered() {
    local line
    line=$(grep "^$CLUSTER|" <<<"$CLUSTER_LIST" || true)
    [[ -n $line && ${line#*|} != "" ]]
}

cluster_registered_now() {
    slurmdbd_ok && cluster_registered
}

# -------------------------------------------------------------- packages ---

ensure_packages() {
    local missing=() p status
    for p in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        [[ $status == "install ok installed" ]] || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0

    say "installing packages: ${missing[*]} (log: $APT_LOG)"
    mkdir -p "$OUT_DIR"
    # Keep maintainer scripts from starting services (no systemd here; we
    # start the daemons ourselves below).
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        CLEANUP_FILES+=(/usr/sbin/policy-rc.d)
    fi
    local -a apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}")
    if ! "${apt[@]}" >"$APT_LOG" 2>&1; then
        say "apt-get install failed; running apt-get update and retrying"
        if ! apt-get update >>"$APT_LOG" 2>&1 || ! "${apt[@]}" >>"$APT_LOG" 2>&1; then
            die_with_log "$APT_LOG" "could not install ${missing[*]}"
        fi
    fi
}

# ------------------------------------------------------------ filesystem ---

ensure_dirs() {
    install -d -m 0755 -o "$SLURM_USER" -g "$SLURM_USER" "$RUN_DIR" "$LOG_DIR" /var/lib/slurm
    install -d -m 0700 -o "$SLURM_USER" -g "$SLURM_USER" "$STATE_DIR"
    install -d -m 0755 -o root -g root "$SPOOL_DIR" "$ETC_DIR"
    install -d -m 0755 -o munge -g munge /run/munge
    install -d -m 0700 -o munge -g munge /var/log/munge /var/lib/munge
    install -d -m 0755 -o root -g root "$OUT_DIR"
    install -d -m 0755 -o mysql -g mysql "$MYSQL_RUN"
    install -d -m 2750 -o mysql -g adm /var/log/mysql
}

ensure_munge_key() {
    if [[ ! -s $MUNGE_KEY ]]; then
        say "creating $MUNGE_KEY"
        install -d -m 0700 -o munge -g munge /etc/munge
        if command -v mungekey >/dev/null 2>&1; then
            rm -f "$MUNGE_KEY"
            mungekey --create --keyfile="$MUNGE_KEY" --bits=8192 >/dev/null
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
        fi
    fi
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
}

# render TEMPLATE DEST MODE OWNER: substitute @VARS@ and install DEST only if
# it changed. Returns 0 if DEST was (re)written, 1 if unchanged.
render() {
    local tpl=$1 dest=$2 mode=$3 owner=$4 tmp
    [[ -r $tpl ]] || die "missing template $tpl"
    tmp=$(mktemp)
    CLEANUP_FILES+=("$tmp")
    sed -e "s|@CLUSTER@|$CLUSTER|g" \
        -e "s|@NODE@|$NODE|g" \
        -e "s|@NODE_CPUS@|$NODE_CPUS|g" \
        -e "s|@NODE_MEM@|$NODE_MEM|g" \
        -e "s|@SLURM_USER@|$SLURM_USER|g" \
        -e "s|@RUN_DIR@|$RUN_DIR|g" \
        -e "s|@LOG_DIR@|$LOG_DIR|g" \
        -e "s|@STATE_DIR@|$STATE_DIR|g" \
        -e "s|@SPOOL_DIR@|$SPOOL_DIR|g" \
        -e "s|@JOBACCT_GATHER@|$JOBACCT_GATHER|g" \
        -e "s|@DB_NAME@|$DB_NAME|g" \
        -e "s|@DB_USER@|$DB_USER|g" \
        -e "s|@DB_PASS@|$DB_PASS|g" \
        -e "s|@HOOK@|$HOOK|g" \
        "$tpl" >"$tmp"
    if grep -q '@[A-Z_]*@' "$tmp"; then
        die "unsubstituted variable in $tpl: $(grep -o '@[A-Z_]*@' "$tmp" | head -n 1)"
    fi
    local changed=1
    if [[ -f $dest ]] && cmp -s "$tmp" "$dest"; then
        changed=0
    else
        install -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$tmp" "$dest"
    fi
    chmod "$mode" "$dest"
    chown "$owner" "$dest"
    ((changed))
}

install_hook() {
    [[ -r $HOOK_SOURCE ]] || die "missing $HOOK_SOURCE"
    if [[ -f $HOOK ]] && cmp -s "$HOOK_SOURCE" "$HOOK"; then
        return 0
    fi
    install -D -m 0755 -o root -g root "$HOOK_SOURCE" "$HOOK"
    say "installed Slurm's hook for hpcgate as $HOOK"
}

write_configs() {
    # Reuse the database password already in slurmdbd.conf, else make one.
    DB_PASS=""
    if [[ -r $ETC_DIR/slurmdbd.conf ]]; then
        DB_PASS=$(sed -n 's/^StoragePass=\([0-9a-f]\{16,\}\)$/\1/p' "$ETC_DIR/slurmdbd.conf" | head -n 1)
    fi
    if [[ -z $DB_PASS ]]; then
        DB_PASS=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    fi

    JOBACCT_GATHER=jobacct_gather/none
    if compgen -G '/usr/lib/*/slurm-wlm/jobacct_gather_linux.so' >/dev/null; then
        JOBACCT_GATHER=jobacct_gather/linux
    fi

    install_hook
    if render "$TEMPLATE_DIR/slurm.conf.in" "$ETC_DIR/slurm.conf" 0644 root:root; then
        SLURM_CONF_CHANGED=1
        say "wrote $ETC_DIR/slurm.conf"
    fi
    if render "$TEMPLATE_DIR/slurmdbd.conf.in" "$ETC_DIR/slurmdbd.conf" 0600 "$SLURM_USER:$SLURM_USER"; then
        DBD_CONF_CHANGED=1
        say "wrote $ETC_DIR/slurmdbd.conf"
    fi
}

# --------------------------------------------------------------- mariadb ---

ensure_mariadb_datadir() {
    if [[ ! -d $MYSQL_DATA/mysql ]]; then
        say "initialising MariaDB data directory $MYSQL_DATA"
        install -d -m 0755 -o mysql -g mysql "$MYSQL_DATA"
        if ! mariadb-install-db --user=mysql --datadir="$MYSQL_DATA" \
            --auth-root-authentication-method=socket --skip-test-db >>"$MYSQL_LOG" 2>&1; then
            die_with_log "$MYSQL_LOG" "mariadb-install-db failed"
        fi
    fi
}

ensure_database() {
    local sql
    sql="CREATE DATABASE IF NOT EXISTS \`$DB_NAME\`;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO '$DB_USER'@'localhost';"
    if ! printf '%s\n' "$sql" | mariadb --no-defaults --socket="$MYSQL_RUN/mysqld.sock" -uroot 2>>"$MYSQL_LOG"; then
        die_with_log "$MYSQL_LOG" "could not create database $DB_NAME / user $DB_USER"
    fi
}

# --------------------------------------------------------------- daemons ---

launch() {
    local d=$1 out
    out=$OUT_DIR/$(basename "$(logfile_of "$d")" .log).out
    case $d in
        munge)
            # --force: start even if a stale socket is left from a killed munged.
            spawn "$out" runuser -u munge -- /usr/sbin/munged --force
            ;;
        mariadb)
            ensure_mariadb_datadir
            rm -f "$MYSQL_RUN/mysqld.sock" "$MYSQL_RUN/mysqld.sock.lock"
            # Started directly (no mysqld_safe/init script) so its pid is ours
            # to watch; the InnoDB settings are the ones slurmdbd checks for.
            spawn_bg "$out" /usr/sbin/mariadbd --user=mysql \
                --pid-file="$MYSQL_RUN/mysqld.pid" --socket="$MYSQL_RUN/mysqld.sock" \
                --log-error="$MYSQL_LOG" \
                --innodb-buffer-pool-size=512M --innodb-lock-wait-timeout=900
            ;;
        slurmdbd | slurmctld | slurmd)
            spawn "$out" "/usr/sbin/$d"
            ;;
    esac
}

# ready_check DAEMON: the command that says DAEMON answers requests.
ready_check() {
    case $1 in
        munge) echo munge_ok ;;
        mariadb) echo mariadb_ok ;;
        slurmdbd) echo slurmdbd_ok ;;
        slurmctld) echo slurmctld_ok ;;
        slurmd) echo slurmd_ok ;;
    esac
}

ready_timeout() {
    case $1 in
        mariadb) echo 60 ;;
        *) echo 30 ;;
    esac
}

# slurmd is ready when its process runs and, if the controller is up, the
# node answers (no '*' in sinfo).
slurmd_ok() {
    daemon_pid slurmd >/dev/null || { echo "slurmd is not running" >&2; return 1; }
    if slurmctld_ok 2>/dev/null && ! node_responding; then
        echo "node $NODE does not answer slurmctld (state: $(node_state))" >&2
        return 1
    fi
}

start_daemon() {
    local d=$1 pid check log
    check=$(ready_check "$d")
    log=$(logfile_of "$d")
    if pid=$(daemon_pid "$d"); then
        if wait_until "$(ready_timeout "$d")" "$d" "$check"; then
            return 0
        fi
        printf 'cluster: readiness check %s says:\n' "$check" >&2
        "$check" 2>&1 >/dev/null | tail -n 5 | sed 's/^/    /' >&2 || true
        die_with_log "$log" "$d (pid $pid) is running but does not answer"
    fi
    case $d in
        slurmdbd) [[ -r $ETC_DIR/slurmdbd.conf ]] || die "no $ETC_DIR/slurmdbd.conf: run '$0 up' first" ;;
        slurmctld | slurmd) [[ -r $ETC_DIR/slurm.conf ]] || die "no $ETC_DIR/slurm.conf: run '$0 up' first" ;;
    esac
    ensure_dirs
    rm -f "$(pidfile_of "$d")"
    say "starting $d"
    [[ $d != slurmctld ]] || CTLD_STARTED_AT=$(date +%s)
    if ! launch "$d"; then
        die_with_log "$log" "$d failed to start"
    fi
    if ! wait_until "$(ready_timeout "$d")" "$d" "$check"; then
        printf 'cluster: readiness check %s says:\n' "$check" >&2
        "$check" 2>&1 >/dev/null | tail -n 5 | sed 's/^/    /' >&2 || true
        if daemon_pid "$d" >/dev/null; then
            die_with_log "$log" "$d started but did not become ready within $(ready_timeout "$d") s"
        fi
        die_with_log "$log" "$d exited during start-up"
    fi
    say "$d running (pid $(daemon_pid "$d" || echo '?'))"
    # A restarted slurmctld knows the node only once slurmd re-registers
    # (~4 s); jobs submitted before then just pend, but callers expect a
    # usable cluster when we return.
    case $d in
        slurmctld) daemon_pid slurmd >/dev/null && wait_node_ready ;;
        slurmd) slurmctld_ok 2>/dev/null && wait_node_ready ;;
    esac
    # Once both run after a slurmctld start: wait for its first scheduling
    # cycle (it needs the node registered) and drop jobs lost in a crash.
    if [[ -n $CTLD_STARTED_AT ]] && daemon_pid slurmd >/dev/null; then
        if ! wait_until 15 "" scheduler_ok; then
            warn "slurmctld's scheduler has not run yet; the first jobs may start late"
        fi
        reap_lost_jobs "$CTLD_STARTED_AT"
        CTLD_STARTED_AT=""
    fi
    return 0
}

stop_daemon() {
    local d=$1 pid pidf i
    pidf=$(pidfile_of "$d")
    if ! pid=$(daemon_pid "$d"); then
        rm -f "$pidf"
        say "$d already stopped"
        return 0
    fi
    say "stopping $d (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        pid_alive "$pid" || break
        sleep 0.1
    done
    if pid_alive "$pid"; then
        warn "$d (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            pid_alive "$pid" || break
            sleep 0.1
        done
        pid_alive "$pid" && die "could not kill $d (pid $pid)"
    fi
    rm -f "$pidf"
    if [[ $d == munge ]]; then
        rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    fi
    return 0
}

# ---------------------------------------------------------- users/accounts ---

ensure_posix_users() {
    local u
    # The account hpcgate's network-facing process runs as (docs/security.md): a system
    # account with its own group, no login shell, no password.
    if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
        say "creating the service account $SERVICE_USER"
        useradd --system --user-group --home-dir /var/lib/hpcgate --no-create-home \
            --shell /usr/sbin/nologin "$SERVICE_USER"
    fi
    getent group "$SHARED_GROUP" >/dev/null || groupadd "$SHARED_GROUP"
    for u in "${TEST_USERS[@]}"; do
        getent group "$u" >/dev/null || groupadd "$u"
        if ! id -u "$u" >/dev/null 2>&1; then
            say "creating user $u"
            useradd -m -d "/home/$u" -g "$u" -G "$SHARED_GROUP" -s /bin/bash "$u"
        fi
        if [[ ! -d /home/$u ]]; then
            install -d -o "$u" -g "$u" "/home/$u"
            cp -rT /etc/skel "/home/$u" 2>/dev/null || true
            chown -R "$u:$u" "/home/$u"
        fi
        chmod 0700 "/home/$u"
        if ! id -nG "$u" | tr ' ' '\n' | grep -qx "$SHARED_GROUP"; then
            usermod -aG "$SHARED_GROUP" "$u"
        fi
    done
}

sacct_add() {
    local out
    if ! out=$(q sacctmgr -i "$@" 2>&1); then
        # "Nothing new added" is not an error for us.
        [[ $out == *"Nothing new"* || $out == *"already exists"* ]] && return 0
        die "sacctmgr $*: $out"
    fi
}

ensure_cluster_in_db() {
    [[ -n $CLUSTER_LIST ]] || slurmdbd_ok || true
    if ! grep -q "^$CLUSTER|" <<<"$CLUSTER_LIST"; then
        say "adding cluster $CLUSTER to slurmdbd"
        sacct_add add cluster "$CLUSTER"
    fi
}

# Accounts alpha (alice, bob, root; alice coordinates it) and beta (bob); alice defaults
# to alpha, bob to beta. Three sacctmgr look-ups when nothing is missing.
ensure_slurm_accounts() {
    local assocs users spec u a def changed=0
    # cluster|account|user rows; an account's own row has an empty user.
    assocs=$(q sacctmgr -n -P list assoc cluster="$CLUSTER" format=account,user)
    users=$(q sacctmgr -n -P list user format=user,defaultaccount)
    if ! grep -qx 'alpha|' <<<"$assocs"; then
        say "adding account alpha"
        sacct_add add account alpha Cluster="$CLUSTER" Description="alice and bob's project" Organization=hpcgate
    fi
    if ! grep -qx 'beta|' <<<"$assocs"; then
        say "adding account beta"
        sacct_add add account beta Cluster="$CLUSTER" Description="bob's second project" Organization=hpcgate
    fi
    # user:account:default-account-if-new
    for spec in alice:alpha:alpha bob:beta:beta bob:alpha:beta root:alpha:; do
        IFS=: read -r u a def <<<"$spec"
        if ! grep -qx "$a|$u" <<<"$assocs"; then
            say "adding user $u to account $a"
            if [[ -n $def ]] && ! grep -q "^$u|" <<<"$users"; then
                sacct_add add user "$u" Cluster="$CLUSTER" Account="$a" DefaultAccount="$def"
            else
                sacct_add add user "$u" Cluster="$CLUSTER" Account="$a"
            fi
            changed=1
        fi
    done
    if ((changed)); then
        users=$(q sacctmgr -n -P list user format=user,defaultaccount)
    fi
    for spec in alice:alpha bob:beta; do
        IFS=: read -r u def <<<"$spec"
        if ! grep -qx "$u|$def" <<<"$users"; then
            say "setting default account of $u to $def"
            sacct_add modify user where name="$u" set DefaultAccount="$def"
        fi
    done
    # The service account polls every user's jobs and creates approved reservations:
    # a Slurm operator (root until the network-facing process became unprivileged).
    if ! grep -qx "$SERVICE_USER|Operator" <<<"$(q sacctmgr -n -P list user format=user,adminlevel)"; then
        say "making $SERVICE_USER a Slurm operator"
        sacct_add add user "$SERVICE_USER" Cluster="$CLUSTER" Account=root DefaultAccount=root
        sacct_add modify user where name="$SERVICE_USER" set AdminLevel=Operator
    fi
    # alice coordinates alpha (she may add and remove its members); bob coordinates nothing.
    if ! q sacctmgr -n -P show account alpha withcoord format=Coordinators | grep -qw alice; then
        say "making alice a coordinator of alpha"
        sacct_add add coordinator account=alpha names=alice
    fi
}

# -------------------------------------------------------------- commands ---

# reap_lost_jobs SINCE: cancel jobs that slurmctld recovered from its state
# files as running (started before SINCE, the epoch it was launched) but for
# which no slurmstepd exists any more. That happens after every daemon was
# killed with SIGKILL (slurmctld lost the jobs' ends, and slurmd came back with
# the same boot time, so Slurm does not purge them): without this they would
# hold their CPUs until their time limit.
reap_lost_jobs() {
    local since=$1 id start st
    while IFS='|' read -r id start; do
        [[ $id =~ ^[0-9]+$ ]] || continue
        st=$(date -d "$start" +%s 2>/dev/null) || continue
        ((st < since)) || continue
        if pgrep -f "^slurmstepd: \[$id\." >/dev/null 2>&1; then
            continue
        fi
        warn "job $id is recorded as running but no slurmstepd runs it (daemons were killed); cancelling it"
        q scancel "$id" >/dev/null 2>&1 || true
    done < <(q squeue -h -w "$NODE" -t R,S -o '%A|%S' 2>/dev/null || true)
}

wait_node_ready() {
    local start last_resume=0 s
    start=$(date +%s)
    while ! node_ok; do
        s=$(node_state)
        if [[ $s == *drain* || $s == *drng* || $s == down* || $s == fail* || $s == *down ]] &&
            (($(date +%s) - last_resume >= 5)); then
            say "node $NODE is '$s': resuming it"
            q scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
            last_resume=$(date +%s)
        fi
        if (($(date +%s) - start >= 60)); then
            printf 'cluster: ERROR: node %s is not usable (state: %s)\n' "$NODE" "${s:-unknown}" >&2
            q scontrol show node "$NODE" >&2 || true
            die_with_log "$LOG_DIR/slurmd.log" "node $NODE did not become idle"
        fi
        sleep 0.2
    done
}

cmd_up() {
    local t0 d
    t0=$(now)
    ensure_packages
    for d in munge mysql "$SLURM_USER"; do
        id -u "$d" >/dev/null 2>&1 || die "system user $d missing after package install"
    done
    ensure_dirs
    ensure_munge_key
    write_configs
    ensure_posix_users

    start_daemon munge
    start_daemon mariadb
    ensure_database

    if ((DBD_CONF_CHANGED)) && daemon_pid slurmdbd >/dev/null; then
        say "slurmdbd.conf changed: restarting slurmdbd"
        stop_daemon slurmdbd
    fi
    start_daemon slurmdbd
    ensure_cluster_in_db

    if ((SLURM_CONF_CHANGED)); then
        for d in slurmd slurmctld; do
            if daemon_pid "$d" >/dev/null; then
                say "slurm.conf changed: restarting $d"
                stop_daemon "$d"
            fi
        done
    fi
    start_daemon slurmctld
    start_daemon slurmd
    ensure_slurm_accounts

    wait_node_ready
    if ! cluster_registered && ! wait_until 30 "" cluster_registered_now; then
        die_with_log "$LOG_DIR/slurmctld.log" "slurmctld did not register cluster $CLUSTER with slurmdbd"
    fi

    local secs
    secs=$(elapsed_since "$t0")
    if [[ $QUIET == 1 ]]; then
        printf 'cluster %s up on node %s (%ss)\n' "$CLUSTER" "$NODE" "$secs"
        return 0
    fi
    printf 'cluster %s up in %ss\n' "$CLUSTER" "$secs"
    printf '  node        %s (%s), CPUs=%s RealMemory=%s\n' "$NODE" "$(node_state)" "$NODE_CPUS" "$NODE_MEM"
    printf '  partitions  debug (default, 1:00:00), long (2-00:00:00)\n'
    printf '  accounts    alpha: alice (coordinator) bob root; beta: bob\n'
    printf '  users       alice (default alpha), bob (default beta); group %s\n' "$SHARED_GROUP"
    printf '  daemons     '
    for d in "${DAEMONS[@]}"; do
        printf '%s=%s ' "$d" "$(daemon_pid "$d" || echo '?')"
    done
    printf '\n'
}

cmd_status() {
    local d pid rc=0
    for d in "${DAEMONS[@]}"; do
        if pid=$(daemon_pid "$d"); then
            printf '%-10s running  pid %s\n' "$d" "$pid"
        else
            printf '%-10s stopped\n' "$d"
            rc=3
        fi
    done
    return "$rc"
}

cmd_down() {
    local i
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        stop_daemon "${DAEMONS[i]}"
    done
    say "all daemons stopped"
}

usage() {
    cat <<EOF
usage: $0 [up|status|down|start DAEMON|stop DAEMON|restart DAEMON]
DAEMON: ${DAEMONS[*]}
EOF
}

main() {
    local cmd=${1:-up}
    case $cmd in
        -h | --help | help)
            usage
            return 0
            ;;
    esac
    require_root
    case $cmd in
        up)
            take_lock
            cmd_up
            ;;
        status)
            cmd_status
            ;;
        down)
            take_lock
            cmd_down
            ;;
        start | stop | restart)
            local d=${2:-}
            if [[ -z $d ]] || ! is_daemon "$d"; then
                usage >&2
                exit 2
            fi
            take_lock
            case $cmd in
                start) start_daemon "$d" ;;
                stop) stop_daemon "$d" ;;
                restart)
                    stop_daemon "$d"
                    start_daemon "$d"
                    ;;
            esac
            ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
