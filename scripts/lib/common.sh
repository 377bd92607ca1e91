# Helpers shared by the scripts that bring up the project's local services
# (cluster.sh, slurm24.sh, postgres.sh, haproxy.sh). Sourced, not run: set LOG_NAME (the
# prefix of every message) first, and QUIET=1 to silence `say`.

CLEANUP_FILES=()

say() {
    if [[ ${QUIET:-0} != 1 ]]; then
        printf '%s: %s\n' "$LOG_NAME" "$*" >&2
    fi
}

warn() {
    printf '%s: warning: %s\n' "$LOG_NAME" "$*" >&2
}

die() {
    printf '%s: ERROR: %s\n' "$LOG_NAME" "$*" >&2
    exit 1
}

# Temporary files registered in CLEANUP_FILES go when the script exits, however it exits.
cleanup() {
    local f
    for f in "${CLEANUP_FILES[@]}"; do
        rm -f -- "$f"
    done
}
trap cleanup EXIT

now() {
    date +%s.%N
}

# close_fds: close every fd above 2 (our lock, a caller's pipes) so that a daemon started
# from here holds nothing of ours: one holding the lock would block every later `up`, one
# holding a caller's pipe would keep `$(...)` waiting.
close_fds() {
    local fd
    for fd in /proc/self/fd/*; do
        fd=${fd##*/}
        if ((fd > 2)); then
            eval "exec ${fd}>&-" 2>/dev/null || true
        fi
    done
}
