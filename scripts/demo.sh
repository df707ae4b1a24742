#!/usr/bin/env bash
# Brings up a local one-node cluster in the lab and runs a 3-replica service
# of the test image, then shows its tasks and an answer from each replica.
#
# Usage: scripts/demo.sh          (scripts/lab.sh down removes it all)
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
need_root "creates network namespaces and containers"

scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
log "building swarm"
cargo build -p swarm-orchestrator
scripts/images.sh

export SWARM_BIN="$REPO_ROOT/target/debug/swarm"
swarm() { scripts/lab.sh exec n1 "$SWARM_BIN" "$@"; }

log "starting a one-node lab"
scripts/lab.sh up 1
if [[ $(swarm info --format json | jq -r .Swarm) != active ]]; then
    swarm init
fi

if swarm service inspect demo >/dev/null 2>&1; then
    log "service demo exists; scaling it to 3"
    swarm service scale demo=3
else
    log "creating service demo (3 replicas of swarm/whoami, port 8000 through the routing mesh)"
    swarm service create --name demo --replicas 3 -p 8000:80 swarm/whoami
fi

echo
swarm node ls
echo
swarm service ls
echo
swarm service ps demo
echo
log "each replica answers on its own address (from inside node n1):"
for addr in $(swarm service ps demo --format json | jq -r 'select(.DesiredState == "Running") | .GatewayAddr'); do
    printf -- '--- http://%s/\n' "$addr"
    scripts/lab.sh exec n1 curl -s -m 5 "http://$addr/"
done
echo
log "through the routing mesh, from the lab's client (the replicas see its address):"
for _ in 1 2 3; do
    scripts/lab.sh exec client curl -s -m 5 "http://198.18.0.11:8000/"
done
echo
log "try: scripts/lab.sh exec n1 $SWARM_BIN service scale demo=5"
log "tear down: scripts/lab.sh down"
