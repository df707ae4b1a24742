#!/usr/bin/env bash
# Deploy benchmark: the seed tutorial's stack (examples/tutorial), timed
# from `deploy` to every service running, and (ours) to the first answer
# on port 8000 from every node; beside Docker Swarm on this machine's
# engine in the same run. Prints one JSON line per run. A benchmark, not a
# test: it asserts nothing about the numbers.
#
# Usage: scripts/bench-stack.sh [--runs N]
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
need_root "runs daemons in network namespaces and Docker Swarm"

runs=3
while (($#)); do
    case $1 in
    --runs) runs=$2; shift 2 ;;
    *) die "usage: scripts/bench-stack.sh [--runs N]" ;;
    esac
done

scripts/setup.sh >/dev/null
scripts/images.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
log "building (release)"
cargo build --release -q -p swarm-orchestrator --bin swarm
export SWARM_BIN="$REPO_ROOT/target/release/swarm"
file=examples/tutorial/docker-compose.yml
[[ $(docker info --format '{{.Swarm.LocalNodeState}}') == inactive ]] ||
    die "this engine is in swarm mode already; the benchmark would leave it"

cleanup() {
    docker stack rm demo >/dev/null 2>&1 || true
    docker swarm leave --force >/dev/null 2>&1 || true
    scripts/lab.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT

ms_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%d", (b - a) * 1000 }'; }

# ---------------------------------------------------------------- ours
scripts/lab.sh down >/dev/null
scripts/lab.sh up 3 >/dev/null
sw() { scripts/lab.sh exec n1 "$SWARM_BIN" "$@"; }
sw init >/dev/null
token=$(sw join-token -q worker)
for n in n2 n3; do scripts/lab.sh exec "$n" "$SWARM_BIN" join --token "$token" 198.18.0.11 >/dev/null; done
echo supersecretpassword | sw secret create db_password - >/dev/null
for run in $(seq 1 "$runs"); do
    # Detached, and polled the way Docker Swarm is below (every service
    # n/n): the waiting deploy adds a 2 s check that the tasks stay up.
    start=$(now)
    sw deploy -d -c "$file" demo >/dev/null 2>&1
    until [[ $(sw stack services demo --format json | jq -r .Replicas |
        awk -F/ '$1 != $2 || $2 == 0 { bad++ } END { print (NR == 3 && bad == 0) ? 1 : 0 }') == 1 ]]; do
        sleep 0.05
    done
    converged=$(ms_since "$start")
    for node in 198.18.0.11 198.18.0.12 198.18.0.13; do
        until scripts/lab.sh exec client curl -sf -m 1 -o /dev/null "http://$node:8000/"; do sleep 0.05; done
    done
    answered=$(ms_since "$start")
    printf '{"bench":"deploy","system":"swarm","nodes":3,"run":%s,"converged_ms":%s,"answers_on_every_node_ms":%s}\n' \
        "$run" "$converged" "$answered"
    sw stack rm demo >/dev/null
done
scripts/lab.sh down >/dev/null

# ---------------------------------------------------------------- Docker Swarm
# One node (the engine itself); its routing mesh needs IPVS, which this
# kernel lacks, so port 8000 never answers: only convergence is timed.
docker swarm init --advertise-addr 127.0.0.1 >/dev/null
echo supersecretpassword | docker secret create db_password - >/dev/null
for run in $(seq 1 "$runs"); do
    start=$(now)
    docker stack deploy -c "$file" demo >/dev/null 2>&1
    until [[ $(docker service ls --filter label=com.docker.stack.namespace=demo --format '{{.Replicas}}' |
        awk -F/ '$1 != $2 || $2 == 0 { bad++ } END { print (NR == 3 && bad == 0) ? 1 : 0 }') == 1 ]]; do
        sleep 0.05
    done
    converged=$(ms_since "$start")
    printf '{"bench":"deploy","system":"docker-swarm","nodes":1,"run":%s,"converged_ms":%s,"answers_on_every_node_ms":null}\n' \
        "$run" "$converged"
    docker stack rm demo >/dev/null
    until [[ -z $(docker ps -q --filter label=com.docker.stack.namespace=demo) ]]; do sleep 0.2; done
    until ! docker network inspect demo_default >/dev/null 2>&1; do sleep 0.2; done
done
