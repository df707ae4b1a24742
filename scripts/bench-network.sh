#!/usr/bin/env bash
# Service-networking benchmarks, in one run, each beside its reference:
#   dns      the embedded DNS server (in a task's namespace, 127.0.0.11)
#            against NSD loaded with the same records, in the same
#            namespace, both loaded by dnsperf;
#   overlay  TCP throughput (iperf3) and request/response latency
#            (sockperf ping-pong) between tasks on two nodes over the VXLAN
#            overlay, against the same between the two nodes' underlay.
# Prints one JSON line per result. A benchmark, not a test: it asserts
# nothing about the numbers.
#
# Usage: scripts/bench-network.sh [--seconds N]
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
need_root "runs daemons and load generators in network namespaces"

seconds=10
while (($#)); do
    case $1 in
    --seconds) seconds=$2; shift 2 ;;
    *) die "usage: scripts/bench-network.sh [--seconds N]" ;;
    esac
done

scripts/setup.sh >/dev/null
ensure_packages dnsperf nsd iperf3 sockperf
scripts/images.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
log "building (release)"
cargo build --release -q -p swarm-orchestrator --bin swarm
export SWARM_BIN="$REPO_ROOT/target/release/swarm"
log "kernel $(uname -r), $(nproc) cores"

work=$(mktemp -d)
cleanup() {
    pkill -f "nsd -c $work" 2>/dev/null || true
    pkill -f "iperf3 -s -p 5201" 2>/dev/null || true
    pkill -f "sockperf sr" 2>/dev/null || true
    scripts/lab.sh down >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# A two-node swarm with a network, a 2-replica service to resolve, and one
# task on each node whose namespace hosts the load generators.
scripts/lab.sh down >/dev/null
scripts/lab.sh up 2 >/dev/null
sw() { scripts/lab.sh exec n1 "$SWARM_BIN" "$@"; }
sw init >/dev/null
token=$(sw join-token -q worker)
scripts/lab.sh exec n2 "$SWARM_BIN" join --token "$token" 198.18.0.11 >/dev/null
sw network create bench >/dev/null
sw service create -q --name web --replicas 2 --network bench swarm/whoami >/dev/null
for n in 1 2; do
    sw service create -q --name "host$n" --network bench --constraint "node.hostname==n$n" swarm/whoami >/dev/null
done
pid_of() {
    docker inspect -f '{{.State.Pid}}' \
        "$(docker ps -q --filter "label=swarm.service.name=$1" --filter label=swarm.role=pause | head -1)"
}
addr_in() { nsenter -t "$1" -n ip -4 -o addr show dev eth1 | awk '{ split($4, a, "/"); print a[1] }'; }
p1=$(pid_of host1)
p2=$(pid_of host2)
a2=$(addr_in "$p2")

# ---------------------------------------------------------------- DNS
# The same names, answered by both: the service (its VIP) and tasks.web.
vip=$(sw service inspect web | jq -r '.[0].endpoint.vips[0].addr')
tasks=()
for c in $(docker ps -q --filter label=swarm.service.name=web --filter label=swarm.role=pause); do
    tasks+=("$(addr_in "$(docker inspect -f '{{.State.Pid}}' "$c")")")
done
[[ $vip != null && ${#tasks[@]} -eq 2 ]] || die "web has no VIP or not two tasks yet"
{
    echo '$ORIGIN .'
    echo '$TTL 1'
    echo '. IN SOA ns. admin. 1 3600 600 86400 1'
    echo '. IN NS ns.'
    echo 'ns. IN A 127.0.0.12'
    echo "web. IN A $vip"
    for t in "${tasks[@]}"; do echo "tasks.web. IN A $t"; done
} >"$work/root.zone"
cat >"$work/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.12
    port: 53
    server-count: $(nproc)
    # Debian's NSD limits responses per client subnet; a load test from
    # one address would measure that limit.
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
    username: ""
    zonelistfile: "$work/zone.list"
    xfrdfile: "$work/xfrd.state"
    pidfile: "$work/nsd.pid"
    database: ""
    logfile: "$work/nsd.log"
remote-control:
    control-enable: no
zone:
    name: "."
    zonefile: "$work/root.zone"
EOF
nsenter -t "$p1" -n nsd -c "$work/nsd.conf"
printf 'web A\ntasks.web A\n' >"$work/queries"
for _ in $(seq 1 50); do
    nsenter -t "$p1" -n ss -lunH | grep -q '127.0.0.12:53 ' && break
    sleep 0.1
done

# dnsperf -v prints one line per answer with its latency: the p99 comes
# from those.
dns_run() {
    local server=$1 label=$2 clients=$3 outstanding=$4 max_qps=${5:-0} out limit=()
    ((max_qps > 0)) && limit=(-Q "$max_qps")
    out=$(nsenter -t "$p1" -n dnsperf -s "$server" -d "$work/queries" -l "$seconds" \
        -c "$clients" -q "$outstanding" "${limit[@]}" -v 2>&1)
    local qps lost p99
    qps=$(awk '/Queries per second/ { print $4 }' <<<"$out")
    lost=$(awk '/Queries lost/ { print $3 }' <<<"$out")
    p99=$(awk '$1 == ">" { print $NF }' <<<"$out" | sort -g | awk '{ v[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.3f", v[i] * 1000 }')
    printf '{"bench":"dns","server":"%s","qps":%s,"p99_ms":%s,"lost":%s,"clients":%s,"outstanding":%s,"max_qps":%s,"seconds":%s}\n' \
        "$label" "${qps:-0}" "${p99:-0}" "${lost:-0}" "$clients" "$outstanding" "$max_qps" "$seconds"
}
# The target load (50,000 queries per second offered) for latency, from
# four clients and from one (dnsperf's client threads share the two cores
# with the servers, so four add their own scheduling delay to every
# p99); then 40 queries in flight, unpaced; then saturation (1,600 in
# flight), each server in turn.
# This VM's host steals time in bursts that can halve one run's figures:
# each load runs three times, the servers interleaved, and
# docs/benchmarks.md gives the medians.
for load in "4 100 50000" "1 50 50000" "2 20" "8 200"; do
    for _ in 1 2 3; do
        # shellcheck disable=SC2086
        dns_run 127.0.0.11 swarm $load
        # shellcheck disable=SC2086
        dns_run 127.0.0.12 nsd $load
    done
done

# ---------------------------------------------------------------- overlay
# iperf3 and sockperf run inside the task namespaces (host binaries,
# task network): task on n1 -> task on n2 over VXLAN, and node n1 -> node n2
# on the underlay, in the same run.
tput_run() {
    local label=$1 srv_ns=$2 cli_ns=$3 addr=$4 bps
    $srv_ns iperf3 -s -p 5201 -D -1 >/dev/null
    sleep 0.3
    bps=$($cli_ns iperf3 -c "$addr" -p 5201 -t "$seconds" -J | jq '.end.sum_received.bits_per_second')
    printf '{"bench":"tcp_throughput","path":"%s","gbit_s":%.2f,"seconds":%s}\n' "$label" "$(jq -n "$bps / 1e9")" "$seconds"
}
rr_run() {
    local label=$1 srv_ns=$2 cli_ns=$3 addr=$4 out
    $srv_ns sockperf sr --tcp -i "$addr" -p 11111 >/dev/null 2>&1 &
    sleep 0.5
    out=$($cli_ns sockperf pp --tcp -i "$addr" -p 11111 -t "$seconds" 2>&1)
    kill %% 2>/dev/null || true
    wait 2>/dev/null || true
    local avg p99
    avg=$(grep -o 'avg-latency=[0-9.]*' <<<"$out" | cut -d= -f2)
    p99=$(awk '/percentile 99.000/ { print $NF }' <<<"$out")
    printf '{"bench":"tcp_rr","path":"%s","avg_us":%s,"p99_us":%s,"seconds":%s}\n' "$label" "${avg:-0}" "${p99:-0}" "$seconds"
}
task1="nsenter -t $p1 -n"
task2="nsenter -t $p2 -n"
node1="ip netns exec swl-n1"
node2="ip netns exec swl-n2"
tput_run overlay "$task2" "$task1" "$a2"
tput_run underlay "$node2" "$node1" 198.18.0.12
rr_run overlay "$task2" "$task1" "$a2"
rr_run underlay "$node2" "$node1" 198.18.0.12
