#!/usr/bin/env bash
# scripts/slurm24.sh -- a Slurm 24.11 test cluster in a Debian trixie root, beside the
# Debian 12 / Slurm 22.05 cluster of scripts/cluster.sh, with pyslurm 24.11.0 built inside
# it. pyslurm must be built against the libslurm of its own Slurm release, and Debian 12
# has 22.05 only: trixie has 24.11. Must run as root.
#
# Usage:
#   scripts/slurm24.sh [up]          build the root once (cached), mount, configure, start
#                                    munge, MariaDB, slurmdbd, slurmctld and slurmd in it,
#                                    create the accounts, build pyslurm and install hpcgate
#                                    into a venv in the root; wait until the node is idle
#   scripts/slurm24.sh status        daemons, mounts and versions; exit 0 if all daemons
#                                    run, 3 otherwise
#   scripts/slurm24.sh run CMD...    run CMD inside the root: this checkout at the same
#                                    path, PATH starting with the venv, SLURM_CONF of the
#                                    24.11 cluster, HPCGATE_SLURM24=1
#   scripts/slurm24.sh shell [CMD]   an interactive shell in the root, or `bash -c CMD`
#   scripts/slurm24.sh down          stop the daemons (and anything else left running in
#                                    the root), unmount; the root itself stays (the cache)
#
# `up` is idempotent: when everything runs it only checks (a few seconds). The first one
# debootstraps trixie, installs ~150 MB of packages and compiles pyslurm: about 2.5 minutes
# here (2 cores, a fast mirror); the root takes 1.7 GB.
#
# What it creates:
#   /var/lib/hpcgate/trixie-root     the root (minbase + the packages below), with stamps
#                                    in .hpcgate/ that say what was built from what
#   /var/cache/hpcgate/trixie-debs   downloaded .debs, reused if the root is rebuilt
#   /var/log/hpcgate-slurm24/        build logs and the daemons' start-up output
#   in the root: cluster "hpcgate24", one node named `hostname -s` (CPUs=8
#   RealMemory=8000, loopback addresses), partitions debug (default, 1 h) and long
#   (2 days), ports 7817 (slurmctld), 7818 (slurmd), 7819 (slurmdbd); MariaDB on a Unix
#   socket only; its own munge key; Slurm accounts alpha (alice, bob, root; alice
#   coordinates it) and beta (bob), alice defaulting to alpha and bob to beta, the
#   service account hpcgate an operator -- as in scripts/cluster.sh; /opt/hpcgate-venv
#   with pyslurm 24.11.0 and this checkout installed editable ([server,dev]). Logs of
#   the daemons: /var/lib/hpcgate/trixie-root/var/log/slurm/*.log.
#
# Users: alice, bob and hpcgate, and the groups hpcgate-test, slurm and munge, are copied
# from the host (scripts/cluster.sh creates them) so that ids mean the same on both sides;
# /home is shared. The daemons run chrooted under names ending in "24" (slurmctld24, ...)
# (with their real names as argv[0]) so that scripts/cluster.sh, looking for the host's
# daemons by name when their pid files are gone, does not take ours for them.
#
# Environment knobs (none required):
#   HPCGATE_DEBIAN_MIRROR   Debian mirror (default: the host's apt source, else
#                           http://deb.debian.org/debian)
#   HPCGATE_VENDOR_DIR      where pyslurm-24.11.0.tar.gz is (default: shared/vendor
#                           beside this checkout, else /work/shared/vendor)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
readonly SCRIPT_DIR
TREE=$(cd "$SCRIPT_DIR/.." && pwd -P)
readonly TREE
readonly TEMPLATE_DIR=$SCRIPT_DIR/slurm24

readonly ROOT=/var/lib/hpcgate/trixie-root
readonly SUITE=trixie
readonly STAMPS=$ROOT/.hpcgate
readonly DEB_CACHE=/var/cache/hpcgate/trixie-debs
readonly OUT_DIR=/var/log/hpcgate-slurm24
readonly LOCK_FILE=/run/lock/hpcgate-slurm24.lock

readonly CLUSTER=hpcgate24
NODE=$(hostname -s)
readonly NODE
readonly NODE_CPUS=8
readonly NODE_MEM=8000
readonly CTLD_PORT=7817
readonly SLURMD_PORT=7818
readonly DBD_PORT=7819
readonly DB_NAME=slurm_acct_db

# Paths inside the root.
readonly VENV=/opt/hpcgate-venv
readonly BUILD_DIR=/opt/hpcgate-build
readonly SLURM_CONF=/etc/slurm/slurm.conf
readonly HOOK=/usr/local/libexec/hpcgate/slurm-hook
readonly HOOK_SOURCE=$TREE/server/hpcgate/server/slurm/hook.py

readonly PYSLURM_VERSION=24.11.0
readonly PYSLURM_TARBALL_NAME=pyslurm-$PYSLURM_VERSION.tar.gz
# From shared/vendor/README.md.
readonly PYSLURM_SHA256=d73656b234ac02981e95bb467c069d2f9a3fe32e86a26398dc3a41ef36b6ae50
# pyslurm 24.11.0 was released for the Cython 3.0 series.
readonly CYTHON_SPEC='Cython>=3.0.11,<3.1'

# What the root is made of. slurm-wlm brings slurmctld, slurmd and the client tools;
# libslurm-dev the headers and libslurmfull.so that pyslurm links against.
readonly ROOT_PACKAGES=(
    slurm-wlm slurmdbd slurm-wlm-mysql-plugin libslurm-dev munge
    mariadb-server mariadb-client
    python3 python3-venv python3-dev gcc libc6-dev
    ca-certificates procps util-linux
)
readonly DAEMONS=(munge mariadb slurmdbd slurmctld slurmd)
# Shared with the host, ids included.
readonly SHARED_USERS=(alice bob hpcgate slurm munge)
readonly SHARED_GROUPS=(alice bob hpcgate hpcgate-test slurm munge)

# The environment of every command run in the root: none of the host's (its PATH, pip
# settings and Python point at things the root does not have).
readonly ROOT_ENV=(
    "PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    HOME=/root LANG=C.UTF-8 "SLURM_CONF=$SLURM_CONF" HPCGATE_SLURM24=1
)

QUIET=0
LOG_NAME=slurm24
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
SLURM_CONF_CHANGED=0
DBD_CONF_CHANGED=0

# ---------------------------------------------------------------- helpers ---

# die_with_log LOGFILE MESSAGE: fail, showing the end of LOGFILE (a host path).
die_with_log() {
    local log=$1
    shift
    printf 'slurm24: ERROR: %s\n' "$*" >&2
    if [[ -s $log ]]; then
        printf -- '---- last lines of %s ----\n' "$log" >&2
        tail -n 30 "$log" >&2 || true
        printf -- '----\n' >&2
    else
        printf 'slurm24: (nothing in %s)\n' "$log" >&2
    fi
    exit 1
}

# A command that fails where nothing checks it stops the script (set -e): say which.
set -E
trap 'printf "slurm24: ERROR: unexpected failure (exit %s) at line %s: %s\n" "$?" "$LINENO" "$BASH_COMMAND" >&2' ERR

elapsed_since() {
    awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }'
}

require_root() {
    if [[ $EUID -ne 0 ]]; then
        echo "slurm24.sh must run as root: it builds a chroot, mounts into it and starts daemons (try: sudo $0 up)" >&2
        exit 2
    fi
}

take_lock() {
    mkdir -p "$(dirname "$LOCK_FILE")"
    exec 9>"$LOCK_FILE"
    flock -w 600 9 || die "another slurm24.sh holds $LOCK_FILE"
}

# in_root CMD...: run CMD chrooted, in the root's clean environment.
in_root() {
    chroot "$ROOT" /usr/bin/env -i "${ROOT_ENV[@]}" "$@"
}

# Client commands get a hard timeout so that a wedged daemon cannot hang us.
q() {
    timeout 20 chroot "$ROOT" /usr/bin/env -i "${ROOT_ENV[@]}" "$@"
}

# spawn OUT CMD...: run CMD in the root, detached (new session, stdio to OUT); for
# daemons that fork themselves into the background.
spawn() {
    local out=$1
    shift
    (
        close_fds
        exec setsid chroot "$ROOT" /usr/bin/env -i "${ROOT_ENV[@]}" "$@" </dev/null >"$out" 2>&1
    )
}

# spawn_bg OUT CMD...: like spawn, for programs that stay in the foreground.
spawn_bg() {
    local out=$1
    shift
    (
        close_fds
        exec setsid chroot "$ROOT" /usr/bin/env -i "${ROOT_ENV[@]}" "$@" </dev/null >"$out" 2>&1
    ) &
    disown $! 2>/dev/null || true
}

# wait_until TIMEOUT CHECK...: poll CHECK until it succeeds.
wait_until() {
    local timeout=$1 start
    shift
    start=$(date +%s)
    until "$@" >/dev/null 2>&1; do
        (($(date +%s) - start < timeout)) || return 1
        sleep 0.3
    done
}

sha256_of() {
    sha256sum | cut -d ' ' -f 1
}

stamp_is() {
    [[ -f $STAMPS/$1 && $(cat "$STAMPS/$1") == "$2" ]]
}

write_stamp() {
    mkdir -p "$STAMPS"
    printf '%s\n' "$2" >"$STAMPS/$1"
}

# ------------------------------------------------------------------ mounts ---

# Mount points at or below the root, deepest first.
root_mounts() {
    awk -v r="$ROOT" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

# Processes whose root directory is ours: the daemons, their jobs, `run` commands.
root_pids() {
    local p
    for p in /proc/[0-9]*; do
        [[ $(readlink "$p/root" 2>/dev/null) == "$ROOT" ]] && echo "${p#/proc/}"
    done
    return 0
}

# bind_in SRC: bind-mount SRC at the same path inside the root, unless already there.
# A bind of a directory since deleted and made again (a CI clone at the same path)
# shows the old, empty one: compare device and inode, and bind again if they differ.
bind_in() {
    local src=$1 dest=$ROOT$1
    if mountpoint -q "$dest"; then
        [[ $(stat -c %d:%i "$src") == "$(stat -c %d:%i "$dest")" ]] && return 0
        umount "$dest" || die "could not unmount the stale bind of $src at $dest"
    fi
    mkdir -p "$dest"
    mount --bind "$src" "$dest" || die "could not bind-mount $src at $dest"
    # On a host whose mounts are shared (systemd's default), what is mounted or
    # unmounted below a bind would propagate back to the host's tree.
    mount --make-private "$dest"
}

# /proc, /sys and /dev for the daemons, apt and Python (/dev/shm: multiprocessing's
# semaphores); /home so that alice's and bob's files are the same on both sides; this
# checkout, at its own path, so that the venv's editable install and the tests find it.
ensure_mounts() {
    if ! mountpoint -q "$ROOT/proc"; then
        mount -t proc proc "$ROOT/proc" || die "could not mount /proc in $ROOT"
    fi
    bind_in /sys
    bind_in /dev
    bind_in /dev/pts
    if mountpoint -q /dev/shm; then
        bind_in /dev/shm
    fi
    bind_in /home
    [[ $TREE == /home/* ]] || bind_in "$TREE"
}

unmount_all() {
    local m
    while read -r m; do
        [[ -n $m ]] || continue
        umount "$m" 2>/dev/null || umount "$m" ||
            die "could not unmount $m (still in use: see 'fuser -vm $m')"
    done < <(root_mounts)
}

# Deleting a root with /home or the checkout still bound into it would delete those too.
assert_nothing_mounted() {
    local left
    left=$(root_mounts)
    [[ -z $left ]] || die "refusing to touch $ROOT while these are mounted in it: $left"
}

# -------------------------------------------------------------- the root ---

# The Debian mirror: the host's own apt source (it is known to be reachable).
debian_mirror() {
    local m=${HPCGATE_DEBIAN_MIRROR:-}
    if [[ -z $m ]]; then
        m=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)\/\?$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
    fi
    if [[ -z $m ]]; then
        m=$(awk '$1 == "deb" && $2 ~ /^http.*\/debian\/?$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
    fi
    echo "${m:-http://deb.debian.org/debian}"
}

ensure_debootstrap() {
    command -v debootstrap >/dev/null && return 0
    say "installing debootstrap on the host (log: $OUT_DIR/host-apt.log)"
    local log=$OUT_DIR/host-apt.log
    apt-get install -y --no-install-recommends debootstrap >"$log" 2>&1 && return 0
    # An old or missing package list: update it and try again.
    if ! apt-get update >>"$log" 2>&1 ||
        ! apt-get install -y --no-install-recommends debootstrap >>"$log" 2>&1; then
        die_with_log "$log" "could not install debootstrap on the host"
    fi
}

# A missing mirror must say so, not fail somewhere inside debootstrap or apt.
check_mirror() {
    local mirror=$1
    local url=$mirror/dists/$SUITE/InRelease
    if ! curl -fsS --max-time 30 -o /dev/null "$url" 2>"$OUT_DIR/mirror.err" &&
        ! python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=30)' \
            "$url" 2>>"$OUT_DIR/mirror.err"; then
        die "cannot fetch $url ($(head -n 1 "$OUT_DIR/mirror.err")): the root is built from Debian $SUITE; set HPCGATE_DEBIAN_MIRROR to a mirror that has it"
    fi
}

# Reuse the .debs of an earlier build: debootstrap takes valid ones found in the
# target's archive instead of downloading them again.
seed_debs() {
    local n
    [[ -d $DEB_CACHE ]] || return 0
    n=$(find "$DEB_CACHE" -maxdepth 1 -name '*.deb' 2>/dev/null | wc -l)
    ((n > 0)) || return 0
    mkdir -p "$ROOT/var/cache/apt/archives"
    cp -l "$DEB_CACHE"/*.deb "$ROOT/var/cache/apt/archives/" 2>/dev/null ||
        cp "$DEB_CACHE"/*.deb "$ROOT/var/cache/apt/archives/"
    say "reusing $n cached .debs from $DEB_CACHE"
}

save_debs() {
    mkdir -p "$DEB_CACHE"
    find "$ROOT/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -lu {} "$DEB_CACHE/" \; 2>/dev/null ||
        find "$ROOT/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -u {} "$DEB_CACHE/" \;
}

debootstrap_root() {
    local mirror=$1 log=$OUT_DIR/debootstrap.log
    if [[ -e $ROOT ]]; then
        # A root without the base stamp is a debootstrap that did not finish.
        assert_nothing_mounted
        say "removing the unfinished root $ROOT"
        rm -rf --one-file-system "$ROOT"
    fi
    mkdir -p "$ROOT"
    seed_debs
    say "debootstrap $SUITE from $mirror into $ROOT (log: $log)"
    if ! debootstrap --variant=minbase "$SUITE" "$ROOT" "$mirror" >"$log" 2>&1; then
        # debootstrap mounts /proc and /sys itself, and may leave them on failure.
        unmount_all
        die_with_log "$log" "debootstrap of $SUITE failed"
    fi
    unmount_all
    write_stamp base "$SUITE $mirror"
}

# Maintainer scripts must not start services: we start the daemons ourselves.
block_service_starts() {
    printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
    chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
}

install_root_packages() {
    local log=$OUT_DIR/apt.log
    say "installing ${#ROOT_PACKAGES[@]} packages from $SUITE into the root (log: $log)"
    block_service_starts
    if ! in_root env DEBIAN_FRONTEND=noninteractive apt-get update >"$log" 2>&1 ||
        ! in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            "${ROOT_PACKAGES[@]}" >>"$log" 2>&1; then
        die_with_log "$log" "apt-get install in the root failed"
    fi
    save_debs
}

# The root is built once; its stamp holds the hash of what it was built from.
ensure_root() {
    local want mirror
    want=$(printf '%s\n' "$SUITE" "${ROOT_PACKAGES[@]}" | sha256_of)
    if stamp_is packages "$want"; then
        return 0
    fi
    mkdir -p "$OUT_DIR"
    mirror=$(debian_mirror)
    check_mirror "$mirror"
    if [[ ! -f $STAMPS/base ]]; then
        unmount_all
        ensure_debootstrap
        debootstrap_root "$mirror"
    fi
    # Before the packages create their system users: slurm and munge get the host's ids.
    sync_ids
    ensure_mounts
    install_root_packages
    write_stamp packages "$want"
}

# ------------------------------------------------------------------- users ---

# copy_entries FILE NAMES...: the root's /etc/FILE gets the host's lines for NAMES,
# replacing its own. A name missing from the host's passwd or group is an error; from
# shadow or gshadow (no password either way), not.
copy_entries() {
    local file=$1 host=/etc/$1 dest=$ROOT/etc/$1 tmp name line
    shift
    [[ -f $dest ]] || return 0
    local -a lines=()
    for name in "$@"; do
        line=$(grep "^$name:" "$host" 2>/dev/null || true)
        if [[ -z $line && ($file == shadow || $file == gshadow) ]]; then
            continue
        fi
        [[ -n $line ]] || die "the host has no '$name' in $host: run 'bash scripts/cluster.sh up' first (it creates alice, bob, hpcgate and the Slurm users)"
        lines+=("$line")
    done
    # Nothing to do when the root has every one of these lines already.
    local missing=0
    for line in "${lines[@]}"; do
        grep -qxF -- "$line" "$dest" || missing=1
    done
    ((missing)) || return 0
    tmp=$(mktemp)
    CLEANUP_FILES+=("$tmp")
    awk -F: -v names=" $* " 'index(names, " " $1 " ") == 0' "$dest" >"$tmp"
    printf '%s\n' "${lines[@]}" >>"$tmp"
    cat "$tmp" >"$dest" # keeps the file's owner and mode (shadow: 0640 root:shadow)
    say "copied the host's entries for $* into the root's /etc/$file"
}

# An id taken in the root by another name would give files two owners.
check_id_clashes() {
    local file=$1 clash
    clash=$(awk -F: '{ if ($3 in seen && seen[$3] != $1) print $3 " (" seen[$3] ", " $1 ")"; seen[$3] = $1 }' \
        "$ROOT/etc/$file" | head -n 1)
    [[ -z $clash ]] ||
        die "the root's /etc/$file uses the id $clash twice; rebuild the root: $0 down && rm -rf $ROOT && $0 up"
}

# Users and groups shared with the host, ids included: files in /home and in the
# checkout, and job owners, mean the same on both sides.
sync_ids() {
    copy_entries passwd "${SHARED_USERS[@]}"
    copy_entries shadow "${SHARED_USERS[@]}"
    copy_entries group "${SHARED_GROUPS[@]}"
    copy_entries gshadow "${SHARED_GROUPS[@]}"
    check_id_clashes passwd
    check_id_clashes group
}

# --------------------------------------------------------- the root's files ---

# copy_if_changed SRC DEST MODE
copy_if_changed() {
    cmp -s "$1" "$2" 2>/dev/null && return 0
    install -D -m "$3" "$1" "$2"
}

# Name resolution and pip's access to PyPI as on the host (the host's CA bundle: the
# registries may be reached through a proxy that the root's own bundle does not know).
ensure_root_files() {
    copy_if_changed /etc/resolv.conf "$ROOT/etc/resolv.conf" 0644
    copy_if_changed /etc/hosts "$ROOT/etc/hosts" 0644
    copy_if_changed /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/hpcgate/host-ca.crt" 0644
    printf '[global]\ncert = /etc/hpcgate/host-ca.crt\ntimeout = 180\ndisable-pip-version-check = true\n' \
        >"$ROOT/etc/pip.conf"
    # Debian's bash prompt names the chroot: (slurm24) root@host.
    echo slurm24 >"$ROOT/etc/debian_chroot"
    block_service_starts
    link_daemon_names
    [[ -r $HOOK_SOURCE ]] || die "missing $HOOK_SOURCE"
    copy_if_changed "$HOOK_SOURCE" "$ROOT$HOOK" 0755
}

# The daemons' processes are named slurmctld24, munged24, ...: scripts/cluster.sh, when
# it finds no pid file of its own, looks the host's daemons up by process name (pgrep -x
# slurmd) and then by executable (slurmd or slurmd-wlm), and must find neither in ours.
# A process is named after the file it was started from, so each daemon runs from a hard
# link under that name; argv[0] keeps the real name (see launch): Slurm's daemons check
# it (a slurmctld called otherwise refuses to load its plugins).
link_daemon_names() {
    local d real link
    for d in munged:/usr/sbin/munged mariadbd:/usr/sbin/mariadbd slurmdbd:/usr/sbin/slurmdbd \
        slurmctld:/usr/sbin/slurmctld slurmd:/usr/sbin/slurmd; do
        # Resolved inside the root: its symlinks are absolute (Debian's alternatives),
        # and from the host they would lead to the host's own binaries.
        real=$ROOT$(in_root readlink -f "${d#*:}") || die "${d#*:} is missing in the root"
        [[ -f $real ]] || die "${d#*:} is missing in the root"
        link=$ROOT/usr/local/sbin/${d%%:*}24
        # Again after a package upgrade replaced the binary.
        if [[ -L $link || ! $link -ef $real ]]; then
            rm -f "$link"
            ln "$real" "$link"
        fi
    done
}

# ---------------------------------------------------------------- configs ---

# render TEMPLATE DEST MODE OWNER: substitute @VARS@ and install DEST (a path in the
# root) only if it changed. Returns 0 if DEST was (re)written, 1 if unchanged.
render() {
    local tpl=$1 dest=$ROOT$2 mode=$3 owner=$4 tmp changed=1
    [[ -r $tpl ]] || die "missing template $tpl"
    tmp=$(mktemp)
    CLEANUP_FILES+=("$tmp")
    sed -e "s|@CLUSTER@|$CLUSTER|g" \
        -e "s|@NODE@|$NODE|g" \
        -e "s|@NODE_CPUS@|$NODE_CPUS|g" \
        -e "s|@NODE_MEM@|$NODE_MEM|g" \
        -e "s|@CTLD_PORT@|$CTLD_PORT|g" \
        -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
        -e "s|@DBD_PORT@|$DBD_PORT|g" \
        -e "s|@JOBACCT_GATHER@|$JOBACCT_GATHER|g" \
        -e "s|@DB_NAME@|$DB_NAME|g" \
        -e "s|@DB_PASS@|$DB_PASS|g" \
        -e "s|@HOOK@|$HOOK|g" \
        "$tpl" >"$tmp"
    if grep -q '@[A-Z_]*@' "$tmp"; then
        die "unsubstituted variable in $tpl: $(grep -o '@[A-Z_]*@' "$tmp" | head -n 1)"
    fi
    if [[ -f $dest ]] && cmp -s "$tmp" "$dest"; then
        changed=0
    else
        install -D -m "$mode" "$tmp" "$dest"
    fi
    # Owners by name inside the root: its ids for mysql and the like are its own.
    in_root chown "$owner" "$2"
    chmod "$mode" "$dest"
    ((changed))
}

write_configs() {
    # Reuse the database password already in slurmdbd.conf, else make one.
    DB_PASS=""
    if [[ -f $ROOT/etc/slurm/slurmdbd.conf ]]; then
        DB_PASS=$(sed -n 's/^StoragePass=\([0-9a-f]\{16,\}\)$/\1/p' "$ROOT/etc/slurm/slurmdbd.conf" | head -n 1)
    fi
    [[ -n $DB_PASS ]] || DB_PASS=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    JOBACCT_GATHER=jobacct_gather/none
    if compgen -G "$ROOT/usr/lib/*/slurm-wlm/jobacct_gather_linux.so" >/dev/null; then
        JOBACCT_GATHER=jobacct_gather/linux
    fi
    if render "$TEMPLATE_DIR/slurm.conf.in" "$SLURM_CONF" 0644 root:root; then
        SLURM_CONF_CHANGED=1
        say "wrote $ROOT$SLURM_CONF"
    fi
    if render "$TEMPLATE_DIR/cgroup.conf.in" /etc/slurm/cgroup.conf 0644 root:root; then
        SLURM_CONF_CHANGED=1
        say "wrote $ROOT/etc/slurm/cgroup.conf"
    fi
    if render "$TEMPLATE_DIR/slurmdbd.conf.in" /etc/slurm/slurmdbd.conf 0600 slurm:slurm; then
        DBD_CONF_CHANGED=1
        say "wrote $ROOT/etc/slurm/slurmdbd.conf"
    fi
}

# The root's /run is a plain directory: what the daemons need there is made here, by
# the root's own users.
ensure_dirs() {
    in_root sh -ec '
        install -d -m 0755 -o slurm -g slurm /run/slurm /var/log/slurm /var/lib/slurm
        install -d -m 0700 -o slurm -g slurm /var/lib/slurm/slurmctld
        install -d -m 0755 -o root -g root /var/lib/slurm/slurmd /etc/slurm
        install -d -m 0755 -o munge -g munge /run/munge
        install -d -m 0700 -o munge -g munge /var/log/munge /var/lib/munge
        install -d -m 0755 -o mysql -g mysql /run/mysqld
        install -d -m 2750 -o mysql -g adm /var/log/mysql'
    mkdir -p "$OUT_DIR"
}

# The root's own key (the munge package may have made one already).
ensure_munge_key() {
    if [[ ! -s $ROOT/etc/munge/munge.key ]]; then
        say "creating the root's munge key"
        in_root mungekey --create --keyfile=/etc/munge/munge.key --bits=8192 >/dev/null
    fi
    in_root chown munge:munge /etc/munge/munge.key
    chmod 0400 "$ROOT/etc/munge/munge.key"
}

# --------------------------------------------------------------- daemons ---

pidfile_of() {
    case $1 in
        munge) echo /run/munge/munged.pid ;;
        mariadb) echo /run/mysqld/mysqld.pid ;;
        *) echo "/run/slurm/$1.pid" ;;
    esac
}

logfile_of() {
    case $1 in
        munge) echo "$ROOT/var/log/munge/munged.log" ;;
        mariadb) echo "$ROOT/var/log/mysql/error.log" ;;
        *) echo "$ROOT/var/log/slurm/$1.log" ;;
    esac
}

# The executable a running daemon of ours has (link_daemon_names).
exe_of() {
    case $1 in
        munge) echo munged24 ;;
        mariadb) echo mariadbd24 ;;
        *) echo "${1}24" ;;
    esac
}

# pid_alive PID: the process exists and is not a zombie (a daemon's parent here is the
# init process, which may take a while to reap it).
pid_alive() {
    local state
    state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z && $state != X ]]
}

# ours DAEMON PID: PID is DAEMON running in our root.
ours() {
    local d=$1 pid=$2 exe
    pid_alive "$pid" || return 1
    [[ $(readlink "/proc/$pid/root" 2>/dev/null) == "$ROOT" ]] || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    exe=${exe% (deleted)}
    [[ ${exe##*/} == "$(exe_of "$d")" ]]
}

# daemon_pid DAEMON: the pid of our running DAEMON (its pid file, else a look through
# the root's processes for the one whose parent is not the same daemon), or fail.
daemon_pid() {
    local d=$1 pid ppid
    pid=$(tr -dc '0-9' 2>/dev/null <"$ROOT$(pidfile_of "$d")" || true)
    if [[ -n $pid ]] && ours "$d" "$pid"; then
        echo "$pid"
        return 0
    fi
    for pid in $(root_pids); do
        ours "$d" "$pid" || continue
        ppid=$(awk '{ print $4 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
        if [[ $ppid != 0 ]] && ours "$d" "$ppid"; then
            continue
        fi
        echo "$pid"
        return 0
    done
    return 1
}

port_of() {
    case $1 in
        slurmdbd) echo "$DBD_PORT" ;;
        slurmctld) echo "$CTLD_PORT" ;;
        slurmd) echo "$SLURMD_PORT" ;;
    esac
}

# A port held by someone else would make the daemon die with a less clear message.
check_port_free() {
    local port
    port=$(port_of "$1")
    [[ -n $port ]] || return 0
    if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
        die "port $port, which $1 of the 24.11 cluster needs, is in use: $(ss -Hltnp "sport = :$port" | head -n 1)"
    fi
}

ensure_mariadb_datadir() {
    [[ -d $ROOT/var/lib/mysql/mysql ]] && return 0
    say "initialising the root's MariaDB data directory"
    if ! in_root mariadb-install-db --user=mysql --datadir=/var/lib/mysql \
        --auth-root-authentication-method=socket --skip-test-db >>"$OUT_DIR/mariadb-install.log" 2>&1; then
        die_with_log "$OUT_DIR/mariadb-install.log" "mariadb-install-db failed"
    fi
}

# as_daemon NAME ARGS...: the command that runs our copy of daemon NAME (NAME24) with
# argv[0] NAME.
as_daemon() {
    local name=$1
    shift
    # shellcheck disable=SC2016 # expanded by that bash
    printf '%s\0' /bin/bash -c 'exec -a "$0" "$@"' "$name" "/usr/local/sbin/${name}24" "$@"
}

launch() {
    local d=$1 out=$OUT_DIR/$1.out
    local -a argv
    case $d in
        munge)
            # --force: start even if a stale socket is left from a killed munged.
            mapfile -d '' argv < <(as_daemon munged --force)
            spawn "$out" runuser -u munge -- "${argv[@]}"
            ;;
        mariadb)
            ensure_mariadb_datadir
            rm -f "$ROOT/run/mysqld/mysqld.sock" "$ROOT/run/mysqld/mysqld.sock.lock"
            # A Unix socket only: the host's MariaDB has port 3306. The InnoDB settings
            # are those slurmdbd checks for.
            mapfile -d '' argv < <(as_daemon mariadbd --user=mysql --skip-networking \
                --pid-file=/run/mysqld/mysqld.pid --socket=/run/mysqld/mysqld.sock \
                --log-error=/var/log/mysql/error.log \
                --innodb-buffer-pool-size=512M --innodb-lock-wait-timeout=900)
            spawn_bg "$out" "${argv[@]}"
            ;;
        slurmd)
            mapfile -d '' argv < <(as_daemon slurmd -N "$NODE")
            spawn "$out" "${argv[@]}"
            ;;
        *)
            mapfile -d '' argv < <(as_daemon "$d")
            spawn "$out" "${argv[@]}"
            ;;
    esac
}

# Readiness checks: succeed when the daemon answers.
munge_ok() {
    q sh -c 'munge -n </dev/null | unmunge >/dev/null'
}

mariadb_ok() {
    q mariadb-admin --no-defaults --socket=/run/mysqld/mysqld.sock -uroot ping
}

# Also keeps the answer (cluster|controlhost lines) in CLUSTER_LIST.
CLUSTER_LIST=""
slurmdbd_ok() {
    CLUSTER_LIST=$(q sacctmgr -n -P list cluster format=cluster,controlhost)
}

slurmctld_ok() {
    [[ $(q scontrol ping 2>&1) == *"is UP"* ]]
}

node_state() {
    q sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null | head -n 1
}

# slurmd runs and, if the controller is up, the node answers (no '*' in sinfo).
slurmd_ok() {
    daemon_pid slurmd >/dev/null || return 1
    slurmctld_ok || return 0
    local s
    s=$(node_state)
    [[ -n $s && $s != *'*' ]]
}

start_daemon() {
    local d=$1 pid log
    log=$(logfile_of "$d")
    if pid=$(daemon_pid "$d"); then
        wait_until 30 "${d}_ok" || die_with_log "$log" "$d (pid $pid) is running but does not answer"
        return 0
    fi
    check_port_free "$d"
    rm -f "$ROOT$(pidfile_of "$d")"
    say "starting $d"
    launch "$d" || die_with_log "$OUT_DIR/$d.out" "$d failed to start (see also $log)"
    if ! wait_until 60 "${d}_ok"; then
        [[ -s $OUT_DIR/$d.out ]] && tail -n 10 "$OUT_DIR/$d.out" >&2
        die_with_log "$log" "$d did not become ready within 60 s"
    fi
    say "$d running (pid $(daemon_pid "$d" || echo '?'))"
}

stop_daemon() {
    local d=$1 pid i
    if ! pid=$(daemon_pid "$d"); then
        rm -f "$ROOT$(pidfile_of "$d")"
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
        sleep 0.5
    fi
    rm -f "$ROOT$(pidfile_of "$d")"
}

# Whatever still runs in the root after the daemons stopped (job steps, a `run`) keeps
# its mounts busy.
stop_leftovers() {
    local pids i
    pids=$(root_pids | tr '\n' ' ')
    [[ -n ${pids// /} ]] || return 0
    warn "stopping processes still running in the root: $(for p in $pids; do printf '%s(%s) ' "$p" "$(cat "/proc/$p/comm" 2>/dev/null)"; done)"
    # shellcheck disable=SC2086 # a list of pids
    kill -TERM $pids 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        [[ -z $(root_pids) ]] && return 0
        sleep 0.1
    done
    # shellcheck disable=SC2046
    kill -KILL $(root_pids) 2>/dev/null || true
    sleep 0.5
}

# --------------------------------------------------------------- database ---

ensure_database() {
    local sql
    sql="CREATE DATABASE IF NOT EXISTS \`$DB_NAME\`;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO 'slurm'@'localhost';"
    if ! printf '%s\n' "$sql" | in_root mariadb --no-defaults --socket=/run/mysqld/mysqld.sock -uroot 2>>"$OUT_DIR/mariadb.out"; then
        die_with_log "$OUT_DIR/mariadb.out" "could not create database $DB_NAME / user slurm"
    fi
}

sacct_add() {
    local out
    if ! out=$(q sacctmgr -i "$@" 2>&1); then
        [[ $out == *"Nothing new"* || $out == *"already exists"* ]] && return 0
        die "sacctmgr $*: $out"
    fi
}

ensure_cluster_in_db() {
    if ! grep -q "^$CLUSTER|" <<<"$CLUSTER_LIST"; then
        say "adding cluster $CLUSTER to slurmdbd"
        sacct_add add cluster "$CLUSTER"
    fi
}

# As in scripts/cluster.sh: alpha (alice, bob, root; alice coordinates it) and beta
# (bob); alice defaults to alpha, bob to beta; the service account is an operator.
ensure_slurm_accounts() {
    local assocs users spec u a def
    assocs=$(q sacctmgr -n -P list assoc cluster="$CLUSTER" format=account,user)
    users=$(q sacctmgr -n -P list user format=user,defaultaccount,adminlevel)
    if ! grep -qx 'alpha|' <<<"$assocs"; then
        say "adding account alpha"
        sacct_add add account alpha Cluster="$CLUSTER" Description="alice and bob's project" Organization=hpcgate
    fi
    if ! grep -qx 'beta|' <<<"$assocs"; then
        say "adding account beta"
        sacct_add add account beta Cluster="$CLUSTER" Description="bob's second project" Organization=hpcgate
    fi
    # user:account:default-account-if-new
    for spec in alice:alpha:alpha bob:beta:beta bob:alpha:beta root:alpha: hpcgate:root:root; do
        IFS=: read -r u a def <<<"$spec"
        grep -qx "$a|$u" <<<"$assocs" && continue
        say "adding user $u to account $a"
        if [[ -n $def ]] && ! grep -q "^$u|" <<<"$users"; then
            sacct_add add user "$u" Cluster="$CLUSTER" Account="$a" DefaultAccount="$def"
        else
            sacct_add add user "$u" Cluster="$CLUSTER" Account="$a"
        fi
    done
    users=$(q sacctmgr -n -P list user format=user,defaultaccount,adminlevel)
    for spec in alice:alpha bob:beta; do
        IFS=: read -r u def <<<"$spec"
        if ! grep -q "^$u|$def|" <<<"$users"; then
            say "setting default account of $u to $def"
            sacct_add modify user where name="$u" set DefaultAccount="$def"
        fi
    done
    if ! grep -q '^hpcgate|.*|Operator$' <<<"$users"; then
        say "making hpcgate a Slurm operator"
        sacct_add modify user where name=hpcgate set AdminLevel=Operator
    fi
    if ! q sacctmgr -n -P show account alpha withcoord format=Coordinators | grep -qw alice; then
        say "making alice a coordinator of alpha"
        sacct_add add coordinator account=alpha names=alice
    fi
}

assocs_listed() {
    local a
    a=$(q sacctmgr -n -P show assoc cluster="$CLUSTER" format=user)
    grep -qx alice <<<"$a" && grep -qx bob <<<"$a"
}

# The node answers and takes jobs (idle, busy with some, or reserved by a test).
node_ok() {
    case $(node_state) in
        idle | mix | alloc | comp | resv | maint | plnd) return 0 ;;
        *) return 1 ;;
    esac
}

# Wait for the node to come back after a restart; resume it if it came back drained.
wait_node_ready() {
    local start s
    start=$(date +%s)
    until node_ok; do
        s=$(node_state)
        if [[ $s == *drain* || $s == *drng* || $s == down* || $s == *down ]]; then
            q scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
        fi
        if (($(date +%s) - start >= 90)); then
            q scontrol show node "$NODE" >&2 || true
            die_with_log "$(logfile_of slurmd)" "node $NODE is '${s:-unknown}', not usable, after 90 s"
        fi
        sleep 0.5
    done
}

# ---------------------------------------------------------------- pyslurm ---

# find_tarball: TARBALL, the vendored pyslurm release with the sha256 the vendor README
# names, or fail saying where it was looked for.
find_tarball() {
    local d sum
    TARBALL=""
    for d in ${HPCGATE_VENDOR_DIR:+"$HPCGATE_VENDOR_DIR"} "$TREE/../shared/vendor" /work/shared/vendor; do
        if [[ -f $d/$PYSLURM_TARBALL_NAME ]]; then
            TARBALL=$d/$PYSLURM_TARBALL_NAME
            break
        fi
    done
    if [[ -n $TARBALL ]]; then
        sum=$(sha256sum "$TARBALL" | cut -d ' ' -f 1)
        [[ $sum == "$PYSLURM_SHA256" ]] ||
            die "$TARBALL has sha256 $sum, not $PYSLURM_SHA256 (shared/vendor/README.md): replace it with the release it names"
        return 0
    fi
    die "$PYSLURM_TARBALL_NAME not found (looked in ${HPCGATE_VENDOR_DIR:+$HPCGATE_VENDOR_DIR, }$TREE/../shared/vendor and /work/shared/vendor): put the vendored tarball there or set HPCGATE_VENDOR_DIR"
}

# find_slurm_lib: SLURM_LIB_DIR, where pyslurm's setup.py finds libslurmfull.so (Debian
# keeps it in slurm-wlm/, which setup.py does not look in by default).
find_slurm_lib() {
    local lib
    lib=$(find "$ROOT/usr/lib" -name libslurmfull.so -print -quit 2>/dev/null || true)
    [[ -n $lib ]] || die "libslurmfull.so is missing in the root (package slurm-wlm-basic-plugins)"
    lib=${lib#"$ROOT"}
    SLURM_LIB_DIR=${lib%/*}
}

ensure_venv() {
    [[ -x $ROOT$VENV/bin/python ]] && return 0
    say "creating $VENV in the root"
    in_root python3 -m venv "$VENV"
}

# Built from the vendored release (PyPI has pyslurm for Slurm 25.11 only), with Cython
# from PyPI; rebuilt when the tarball, Cython's range or the root's libslurm change.
ensure_pyslurm() {
    local want log=$OUT_DIR/pyslurm-build.log src=$BUILD_DIR/pyslurm-$PYSLURM_VERSION
    # Checked on every `up`, built or not: a test run must not pass without the tarball.
    find_tarball
    # shellcheck disable=SC2016 # a dpkg-query format
    want="pyslurm $PYSLURM_SHA256 $CYTHON_SPEC $(in_root dpkg-query -W -f='${Version}' libslurm-dev)"
    stamp_is pyslurm "$want" && return 0

    ensure_venv
    say "building pyslurm $PYSLURM_VERSION in the root (log: $log; several minutes)"
    rm -rf "${ROOT:?}$BUILD_DIR"
    mkdir -p "$ROOT$BUILD_DIR"
    tar -xzf "$TARBALL" -C "$ROOT$BUILD_DIR"
    [[ -f $ROOT$src/setup.py ]] || die "$TARBALL does not unpack to pyslurm-$PYSLURM_VERSION/"
    # Compile the extensions on every core (setup.py itself compiles one at a time).
    printf '\n[build_ext]\nparallel = %s\n' "$(nproc)" >>"$ROOT$src/setup.cfg"
    find_slurm_lib
    {
        in_root "$VENV/bin/pip" install "$CYTHON_SPEC" 'setuptools>=59.2' 'wheel>=0.37' 'packaging>=21.3' &&
            in_root env SLURM_LIB_DIR="$SLURM_LIB_DIR" SLURM_INCLUDE_DIR=/usr/include \
                PYSLURM_BUILD_JOBS="$(nproc)" \
                "$VENV/bin/pip" install --no-build-isolation "$src" &&
            in_root "$VENV/bin/python" -c 'import pyslurm; print("pyslurm", pyslurm.__version__)'
    } >"$log" 2>&1 || die_with_log "$log" "building pyslurm $PYSLURM_VERSION failed"
    write_stamp pyslurm "$want"
    say "$(tail -n 1 "$log") built"
}

# This checkout, editable, with the server's and the tools' dependencies: the gateway
# and the tests run in the root against its libslurm.
ensure_project() {
    local want log=$OUT_DIR/pip-project.log
    want="$TREE $(sha256_of <"$TREE/pyproject.toml")"
    stamp_is project "$want" && return 0
    ensure_venv
    say "installing ${TREE}[server,dev] into $VENV (log: $log)"
    in_root "$VENV/bin/pip" install -e "${TREE}[server,dev]" >"$log" 2>&1 ||
        die_with_log "$log" "pip install -e ${TREE}[server,dev] in the root failed"
    write_stamp project "$want"
}

# -------------------------------------------------------------- commands ---

check_host_users() {
    local u
    for u in "${SHARED_USERS[@]}"; do
        id -u "$u" >/dev/null 2>&1 ||
            die "the host has no user $u: run 'bash scripts/cluster.sh up' first (it creates alice, bob, hpcgate and installs Slurm's users)"
    done
}

start_all() {
    local d
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
}

cmd_up() {
    local t0
    t0=$(now)
    check_host_users
    # Before anything is built: without pyslurm's tarball this cluster has no use.
    find_tarball
    mkdir -p "$OUT_DIR"
    ensure_root
    sync_ids
    ensure_mounts
    ensure_root_files
    ensure_dirs
    ensure_munge_key
    write_configs
    start_all
    ensure_slurm_accounts
    wait_node_ready
    wait_until 30 assocs_listed || die "sacctmgr show assoc does not list alice and bob"
    ensure_pyslurm
    ensure_project
    printf 'slurm24: cluster %s (Slurm %s) up in %ss\n' "$CLUSTER" "$(slurm_version)" "$(elapsed_since "$t0")"
    printf '  node        %s (%s), CPUs=%s RealMemory=%s; ports %s %s %s\n' "$NODE" "$(node_state)" \
        "$NODE_CPUS" "$NODE_MEM" "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT"
    printf '  root        %s\n' "$ROOT"
    printf '  python      %s (pyslurm %s)\n' "$VENV" "$PYSLURM_VERSION"
    printf '  try         bash %s run sinfo\n' "$0"
}

slurm_version() {
    q sinfo -V 2>/dev/null | awk '{ print $2 }'
}

cmd_status() {
    local d pid rc=0 m
    if [[ ! -f $STAMPS/packages ]]; then
        echo "no root at $ROOT: run '$0 up'"
        return 3
    fi
    for d in "${DAEMONS[@]}"; do
        if pid=$(daemon_pid "$d"); then
            printf '%-10s running  pid %s\n' "$d" "$pid"
        else
            printf '%-10s stopped\n' "$d"
            rc=3
        fi
    done
    printf 'mounts     %s\n' "$(root_mounts | sed "s|^$ROOT||" | sort | tr '\n' ' ')"
    if mountpoint -q "$ROOT/proc"; then
        printf 'slurm      %s\n' "$(slurm_version || echo '?')"
        printf 'python     %s\n' "$(in_root python3 -V 2>&1)"
        m=$(in_root "$VENV/bin/python" -c 'import pyslurm; print(pyslurm.__version__)' 2>/dev/null || echo 'not built')
        printf 'pyslurm    %s\n' "$m"
    fi
    return "$rc"
}

cmd_down() {
    local i
    if [[ ! -d $ROOT ]]; then
        say "no root at $ROOT: nothing to stop"
        return 0
    fi
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        stop_daemon "${DAEMONS[i]}"
    done
    rm -f "$ROOT/run/munge/munge.socket.2" "$ROOT/run/munge/munge.socket.2.lock"
    stop_leftovers
    unmount_all
    say "daemons stopped, $ROOT unmounted"
}

# run_in_root CMD...: CMD in the root, from the same directory when the root has it.
run_in_root() {
    local dir=$PWD var
    local -a env=("${ROOT_ENV[@]}" "TERM=${TERM:-dumb}")
    [[ -d $ROOT/proc/self ]] || die "the root is not mounted: run '$0 up' first"
    [[ -x $ROOT$VENV/bin/python ]] || die "no $VENV in the root: run '$0 up' first"
    case $dir in
        "$TREE" | "$TREE"/* | /home | /home/*) ;;
        *) dir=$TREE ;;
    esac
    # CI=true makes a missing dependency fail the tests instead of skipping them.
    for var in CI PYTEST_ADDOPTS $(compgen -e | grep '^HPCGATE_' || true); do
        [[ -v $var ]] && env+=("$var=${!var}")
    done
    # shellcheck disable=SC2016 # expanded by the root's bash
    exec chroot "$ROOT" /usr/bin/env -i "${env[@]}" /bin/bash -c 'cd -- "$1" && shift && exec "$@"' bash "$dir" "$@"
}

usage() {
    cat <<EOF
usage: $0 [up|status|down|run CMD...|shell [CMD]]
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
            cmd_status || exit "$?"
            ;;
        down)
            take_lock
            cmd_down
            ;;
        run)
            shift
            (($# > 0)) || {
                usage >&2
                exit 2
            }
            run_in_root "$@"
            ;;
        shell)
            shift
            if (($# > 0)); then
                run_in_root bash -c "$*"
            else
                run_in_root bash -i
            fi
            ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
