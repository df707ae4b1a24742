#!/usr/bin/env bash
# Runs every test on this machine: prepares the host, builds, builds the
# images, checks formatting and lints, runs the unit tests, then the scenario
# tests against a real lab (real daemons in netns, real Docker, real raft on
# disk). Any missing prerequisite fails the run; nothing is skipped.
#
# Usage: scripts/test.sh
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
need_root "drives network namespaces, Docker and the lab"

start=$(now)
log "setup";          scripts/setup.sh
# A real registry for the image-pull scenario.
ensure_packages docker-registry
# setup.sh may have installed a toolchain into a fresh shell's PATH.
export PATH="$HOME/.cargo/bin:$PATH"
# The package test builds a .deb: its packager is installed here, outside
# any cargo run.
ensure_cargo_deb
log "build";          cargo build --workspace --all-targets
log "images";         scripts/images.sh
log "format";         cargo fmt --all -- --check
log "lint";           cargo clippy --workspace --all-targets -- -D warnings

results=$(mktemp)
trap 'rm -f "$results"' EXIT
log "unit tests"
cargo test --workspace --exclude swarm-tests 2>&1 | tee -a "$results"

log "scenario tests (lab)"
# Start from a clean lab and leave none behind, pass or fail.
scripts/lab.sh down >/dev/null
trap 'scripts/lab.sh down >/dev/null 2>&1 || true; rm -f "$results"' EXIT
SWARM_BIN="$REPO_ROOT/target/debug/swarm" cargo test -p swarm-tests -- --test-threads=1 2>&1 | tee -a "$results"

log "all tests passed in $(elapsed "$start")"
# One closing line over every cargo test run above.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$results"
