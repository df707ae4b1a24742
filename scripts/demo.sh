#!/usr/bin/env bash
# The seed tutorial on a local three-node cluster in the lab: a manager (n1)
# and two workers, the tutorial's stack (examples/tutorial) deployed with
# `swarm deploy`, and port 8000 answering on every node through the
# routing mesh. Prints the URL, then answers from each node: two web
# containers taking turns and a counter that rises.
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
on() {
    local node=$1
    shift
    scripts/lab.sh exec "$node" "$SWARM_BIN" "$@"
}
swarm() { on n1 "$@"; }

log "starting a three-node lab"
scripts/lab.sh up 3
if [[ $(swarm info --format json | jq -r .Swarm) != active ]]; then
    swarm init
fi
token=$(swarm join-token -q worker)
for n in n2 n3; do
    if [[ $(on "$n" info --format json | jq -r .Swarm) != active ]]; then
        on "$n" join --token "$token" 198.18.0.11
    fi
done

log "creating the tutorial's secret: echo supersecretpassword | swarm secret create db_password -"
if ! swarm secret inspect db_password >/dev/null 2>&1; then
    echo supersecretpassword | swarm secret create db_password -
fi
log "deploying the tutorial's stack (waits until every service runs)"
swarm deploy -c examples/tutorial/docker-compose.yml demo

echo
swarm node ls
echo
swarm stack services demo
echo
log "open http://198.18.0.11:8000/ (or .12, .13) from the lab's client:"
log "  scripts/lab.sh exec client curl http://198.18.0.12:8000/"
echo
for round in 1 2; do
    for node in 198.18.0.11 198.18.0.12 198.18.0.13; do
        page=$(scripts/lab.sh exec client curl -s -m 5 "http://$node:8000/")
        container=$(sed -n 's/.*id="hostname">\([^<]*\)<.*/\1/p' <<<"$page")
        count=$(sed -n 's/.*id="requests">\([^<]*\)<.*/\1/p' <<<"$page")
        secret=$(sed -n 's/.*id="secret">\([^<]*\)<.*/\1/p' <<<"$page")
        printf 'round %s  %-12s  served by %-28s  requests so far: %-4s  secret: %s\n' "$round" "$node" "$container" "$count" "$secret"
    done
done
echo
log "the tutorial's next steps, on the manager:"
log "  scripts/lab.sh exec n1 $SWARM_BIN service update --env-add GREETING=hi demo_web   # a rolling update"
log "  scripts/lab.sh exec n1 $SWARM_BIN service scale demo_web=10"
log "  scripts/lab.sh exec n1 $SWARM_BIN node update --availability drain n2"
log "  scripts/lab.sh exec n1 $SWARM_BIN stack rm demo"
log "tear down: scripts/lab.sh down"
