#!/usr/bin/env bash
# Prints ready-to-use access tokens before `make run` serves: one for the invoking user,
# and, when that is root (who may do no per-user work), one for the demo user alice
# that scripts/cluster.sh creates, so the README's first steps work as written.
set -euo pipefail
bin=$1 listen=$2 run_user=$3

token_for() {
    "$bin/hpcgate-server" token --user "$1" --scope read --scope write --scope execute \
        --ttl 28800
}

users=("$run_user")
if [[ $run_user == root ]] && id alice >/dev/null 2>&1; then
    users+=(alice)
fi
echo
for user in "${users[@]}"; do
    token=$(token_for "$user")
    if [[ $user == root ]]; then
        echo "Access token for root (8 hours, loopback only; root may not run jobs or touch files):"
        echo "  export HPCGATE_ROOT_TOKEN=$token"
    else
        echo "Access token for $user (8 hours, loopback only):"
        echo "  export HPCGATE_TOKEN=$token"
    fi
done
echo
echo "Then, as ${users[-1]}:"
echo "  export HPCGATE_ADDRESS=$listen HPCGATE_SYSTEM=local"
echo "  $bin/hpcgate whoami"
echo "  $bin/hpcgate sbatch --wait --follow job.sh"
if [[ -n ${HPCGATE_HTTP_LISTEN:-} ]]; then
    echo "Status page: http://$HPCGATE_HTTP_LISTEN/   curl (Connect, JSON):"
    echo "  curl -H 'content-type: application/json' -d '{}' http://$HPCGATE_HTTP_LISTEN/hpcgate.v1.StatusService/ListSystems"
    echo "  curl -H 'content-type: application/json' -H \"authorization: Bearer \$HPCGATE_TOKEN\" -d '{}' http://$HPCGATE_HTTP_LISTEN/hpcgate.v1.AuthService/GetTokenInfo"
fi
# With a configuration of its own (cluster mode), tokens must be signed with its key.
config=${HPCGATE_CONFIG:+--config $HPCGATE_CONFIG }
echo "A new token: $bin/hpcgate-server ${config}token --user ${users[-1]} --scope read --scope write --scope execute"
echo
