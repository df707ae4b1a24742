#!/usr/bin/env bash
# Rolling-update and scale benchmark: a 10-replica service of the test
# image updated (a new environment variable, so every task is replaced)
# with parallelism 2, timed from the update until the manager records the
# update completed; then scaled 10 -> 30, timed until 30 tasks run. Ours
# on a one-node and a three-node lab, Docker Swarm on this machine's engine
# (one node), in the same run, with the same settings (parallelism 2, no
# delay, a 1 s monitor). Prints one JSON line per measurement. A
# benchmark, not a test: it asserts nothing about the numbers.
#
# Usage: scripts/bench-update.sh [--runs N]
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
need_root "runs daemons in network namespaces and Docker Swarm"

runs=3
while (($#)); do
    case $1 in
    --runs) runs=$2; shift 2 ;;
    *) die "usage: scripts/bench-update.sh [--runs N]" ;;
    esac
done

scripts/setup.sh >/dev/null
scripts/images.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
log "building (release)"
cargo build --release -q -p swarm-orchestrator --bin swarm
export SWARM_BIN="$REPO_ROOT/target/release/swarm"
[[ $(docker info --format '{{.Swarm.LocalNodeState}}') == inactive ]] ||
    die "this engine is in swarm mode already; the benchmark would leave it"

cleanup() {
    docker service rm bench >/dev/null 2>&1 || true
    docker swarm leave --force >/dev/null 2>&1 || true
    scripts/lab.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT

ms_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%d", (b - a) * 1000 }'; }
policy=(--update-parallelism 2 --update-delay 0s --update-monitor 1s)
image=swarm/whoami:latest

# emit SYSTEM NODES RUN WHAT MS
emit() {
    printf '{"bench":"%s","system":"%s","nodes":%s,"run":%s,"ms":%s}\n' "$4" "$1" "$2" "$3" "$5"
}

# ---------------------------------------------------------------- ours
for nodes in 1 3; do
    scripts/lab.sh down >/dev/null
    scripts/lab.sh up "$nodes" >/dev/null
    sw() { scripts/lab.sh exec n1 "$SWARM_BIN" "$@"; }
    sw init >/dev/null
    token=$(sw join-token -q worker)
    for i in $(seq 2 "$nodes"); do
        scripts/lab.sh exec "n$i" "$SWARM_BIN" join --token "$token" 198.18.0.11 >/dev/null
    done
    running() { sw service ps bench --format json | jq -s '[.[] | select(.DesiredState == "Running" and (.CurrentState | startswith("Running")))] | length'; }
    for run in $(seq 1 "$runs"); do
        sw service create -q --name bench --replicas 10 "${policy[@]}" "$image" >/dev/null
        start=$(now)
        sw service update -d --env-add "RUN=$run" bench >/dev/null
        until [[ $(sw service inspect bench | jq -r '.[0].update_status.state') == completed ]]; do sleep 0.05; done
        emit swarm "$nodes" "$run" rolling_update_10_by_2 "$(ms_since "$start")"
        start=$(now)
        sw service scale -d bench=30 >/dev/null
        until [[ $(running) == 30 ]]; do sleep 0.05; done
        emit swarm "$nodes" "$run" scale_10_to_30 "$(ms_since "$start")"
        sw service rm bench >/dev/null
        until [[ -z $(docker ps -aq --filter label=swarm.service.name=bench) ]]; do sleep 0.2; done
    done
done
scripts/lab.sh down >/dev/null

# ---------------------------------------------------------------- Docker Swarm
docker swarm init --advertise-addr 127.0.0.1 >/dev/null
for run in $(seq 1 "$runs"); do
    docker service create -q -d --name bench --replicas 10 "${policy[@]}" "$image" >/dev/null
    until [[ $(docker service ls --filter name=bench --format '{{.Replicas}}') == 10/10 ]]; do sleep 0.05; done
    start=$(now)
    docker service update -q -d --env-add "RUN=$run" bench >/dev/null
    until [[ $(docker service inspect bench --format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}') == completed ]]; do sleep 0.05; done
    emit docker-swarm 1 "$run" rolling_update_10_by_2 "$(ms_since "$start")"
    start=$(now)
    docker service scale -d bench=30 >/dev/null
    until [[ $(docker service ls --filter name=bench --format '{{.Replicas}}') == 30/30 ]]; do sleep 0.05; done
    emit docker-swarm 1 "$run" scale_10_to_30 "$(ms_since "$start")"
    docker service rm bench >/dev/null
    until [[ -z $(docker ps -aq --filter label=com.docker.swarm.service.name=bench) ]]; do sleep 0.2; done
done
