#!/usr/bin/env bash
# Ingress benchmark: XDP mode vs iptables mode vs the direct path, in one run,
# at 1, 100, 1,000 and 10,000 services (4 backends each). It builds its own
# namespaces (client, node A with 2 backends, node B with 2 backends), and
# writes DIR/results.json, DIR/results.md and DIR/udp_pps.svg.
# A benchmark, not a test: it asserts nothing about the numbers.
#
# Usage: scripts/bench-ingress.sh [--quick] [--out DIR]
#   --quick   1-second measurement windows (the whole run takes ~2 minutes)
#   --out     output directory (default: bench-results)
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
need_root "creates network namespaces and loads BPF programs"

scripts/setup.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
log "building (release)"
cargo build --release -q -p swarm-orchestrator -p swarm-tests --bin swarm --bin swarm-bench
log "kernel $(uname -r), $(nproc) cores; running the benchmark"
SWARM_BIN="$REPO_ROOT/target/release/swarm" target/release/swarm-bench "$@"
