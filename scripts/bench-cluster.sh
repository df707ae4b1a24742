#!/usr/bin/env bash
# Control-plane benchmarks: raft commits per second (1 and 3 managers, 1 and
# 64 concurrent writers, fsync on), scheduling 10,000 tasks over 100
# simulated nodes, and, in the lab, leader failover (20 kills) and the
# replacement of a dead node's tasks. Prints one JSON line per result.
# A benchmark, not a test: it asserts nothing about the numbers.
#
# Usage: scripts/bench-cluster.sh [--kills N] [--deaths M]
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
need_root "runs daemons in network namespaces"

scripts/setup.sh >/dev/null
scripts/images.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
log "building (release)"
cargo build --release -q -p swarm-orchestrator -p swarm-tests --bin swarm --bin swarm-bench-cluster
bin=target/release/swarm
log "kernel $(uname -r), $(nproc) cores"
for managers in 1 3; do
    for clients in 1 64; do
        SWARM_LOG=error "$bin" bench raft --managers "$managers" --clients "$clients" --seconds 5
    done
done
SWARM_LOG=error "$bin" bench schedule --nodes 100 --tasks 10000
SWARM_BIN="$REPO_ROOT/$bin" target/release/swarm-bench-cluster "$@"
