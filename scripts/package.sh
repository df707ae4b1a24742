#!/usr/bin/env bash
# Builds the swarm Debian package with cargo-deb: the binary, the systemd
# units (packaging/swarm.service, Type=notify; packaging/swarm-bpffs.service),
# a sysctl.d file for forwarding, shell completions and man pages generated
# from the binary itself. (`systemd-analyze verify` needs the units'
# binaries and man pages in place, so the package test runs it on the
# installed package: tests/tests/package.rs.)
#
# Usage: scripts/package.sh [--debug] [--no-build] [--out DIR]
#   --debug     package the debug build (faster; what the package test uses)
#   --no-build  package the binary already built (the package test's)
#   --out       where the .deb goes (default: target/debian)
# Prints the .deb's path as its last line.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

profile=release
build=1
out="$REPO_ROOT/target/debian"
while (($#)); do
    case $1 in
    --debug) profile=dev ;;
    --no-build) build=0 ;;
    --out)
        (($# >= 2)) || die "--out needs a directory"
        out=$2
        shift
        ;;
    *) die "usage: scripts/package.sh [--debug] [--no-build] [--out DIR] (unknown: $1)" ;;
    esac
    shift
done

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
have cargo || die "cargo not found; run scripts/setup.sh"
ensure_cargo_deb

cd "$REPO_ROOT"
dir=$([[ $profile == dev ]] && echo debug || echo release)
bin="$REPO_ROOT/target/$dir/swarm"
if ((build)); then
    log "cargo build ($dir) swarm"
    cargo build -q --profile "$profile" -p swarm-orchestrator --bin swarm
fi
[[ -x $bin ]] || die "$bin is not built (run without --no-build)"

# Generated from the parser's definitions: never out of step with the binary.
gen="$REPO_ROOT/target/package"
rm -rf "$gen"
mkdir -p "$gen/completions" "$gen/man"
"$bin" completion bash >"$gen/completions/swarm.bash"
"$bin" completion zsh >"$gen/completions/_swarm"
"$bin" completion fish >"$gen/completions/swarm.fish"
"$bin" man "$gen/man" >/dev/null
gzip -9n "$gen"/man/*.1

mkdir -p "$out"
fast=()
[[ $profile == dev ]] && fast=(--fast)
log "cargo deb"
deb=$(cargo deb -q -p swarm-orchestrator --no-build --profile "$profile" "${fast[@]}" --output "$out")
echo "$deb"
