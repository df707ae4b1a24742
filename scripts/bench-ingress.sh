#!/usr/bin/env bash
# Ingress benchmark: XDP mode vs iptables mode vs the direct path, in one run,
# at 1, 100, 1,000 and 10,000 services (4 backends each). It builds its own
# namespaces (a client, node A and node B with 2 backends each, the underlay
# bridge in a namespace of its own, with no netfilter on bridged frames),
# runs the generator on CPU0 and steers the forwarding path to the last CPU
# (RPS), and writes DIR/results.json, DIR/results.md and one SVG per metric.
# A benchmark, not a test: it asserts nothing about the numbers.
#
# Usage: scripts/bench-ingress.sh [--quick] [--out DIR] [--repeats N]
#            [--window SECS] [--services 1,100,...] [--modes direct,xdp,iptables]
#            [--profile]
#   --quick     1-second windows (default 2)
#   --repeats   rounds over every point (default 3): median, min and max
#   --profile   also sample the forwarding core with perf (DIR/profile-*.txt)
#   --out       output directory (default: bench-results)
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
need_root "creates network namespaces and loads BPF programs"

scripts/setup.sh >/dev/null
# conntrack: iptables mode's tables are emptied before each new-flow window.
ensure_packages conntrack linux-perf
export PATH="$HOME/.cargo/bin:$PATH"
log "building (release)"
cargo build --release -q -p swarm-orchestrator -p swarm-tests --bin swarm --bin swarm-bench
log "kernel $(uname -r), $(nproc) cores; running the benchmark"
SWARM_BIN="$REPO_ROOT/target/release/swarm" target/release/swarm-bench "$@"
