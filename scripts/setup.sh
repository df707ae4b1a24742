#!/usr/bin/env bash
# Prepares this host for building and running swarm: Debian packages (BPF
# toolchain, netlink/iptables tools, mmdebstrap for images), Docker Engine
# reachable, bpffs mounted, IPv4 forwarding on, a Rust toolchain present.
#
# Idempotent: a second run installs nothing and takes about a second.
# Usage: scripts/setup.sh
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PACKAGES=(
    clang-19 libbpf-dev            # eBPF programs (C, compiled to BPF objects)
    iproute2 iptables ethtool      # netns, veth, VXLAN; iptables data-plane mode; lab NIC offloads
    mmdebstrap                     # Debian rootfs for the local images
    protobuf-compiler              # tonic-build
    jq curl ca-certificates openssl  # scripts and tests
    procps psmisc util-linux       # ps/pkill, fuser, nsenter/mount/findmnt
    prometheus                     # the metrics test scrapes a lab daemon with it (and promtool)
)

need_root "installs packages, mounts bpffs and sets sysctls"
have dpkg-query || die "this script supports Debian-based hosts only (no dpkg-query)"

check_docker() {
    have docker || die "the docker CLI is not installed; install Docker Engine (e.g. 'apt-get install docker.io') and start it"
    if ! timeout 20 docker info >/dev/null 2>&1; then
        die "Docker Engine does not answer 'docker info'.
  Start it with 'systemctl start docker' (or 'service docker start';
  without an init system: 'dockerd >/var/log/dockerd.log 2>&1 &'),
  then run this script again."
    fi
}

mount_bpffs() {
    if findmnt -n -t bpf /sys/fs/bpf >/dev/null 2>&1; then
        return
    fi
    mkdir -p /sys/fs/bpf
    mount -t bpf bpf /sys/fs/bpf ||
        die "could not mount bpffs at /sys/fs/bpf (kernel without CONFIG_BPF_SYSCALL, or no CAP_SYS_ADMIN?)"
    log "mounted bpffs at /sys/fs/bpf"
}

# `ip netns exec` remounts /sys in a private mount namespace, hiding the
# host's bpffs. A second mount point of the same bpffs outside /sys stays
# visible there, and the data plane bind-mounts it back over /sys/fs/bpf, so
# every process, in any lab node, sees the same pinned maps.
alias_bpffs() {
    local alias=/run/swarm/bpffs
    if findmnt -n -t bpf "$alias" >/dev/null 2>&1; then
        return
    fi
    mkdir -p "$alias"
    mount --bind /sys/fs/bpf "$alias" || die "could not bind-mount /sys/fs/bpf at $alias"
    log "bpffs also at $alias (for processes in network namespaces)"
}

check_rust() {
    # rustup installs into ~/.cargo/bin, which a non-login shell may not have on PATH.
    if ! have cargo && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
        warn "cargo found in ${CARGO_HOME:-$HOME/.cargo}/bin, which is not on PATH; add it to PATH"
    fi
    have cargo || die "no Rust toolchain: 'cargo' is not on PATH.
  Install stable Rust with rustup (it puts cargo in ~/.cargo/bin), then run this script again."
}

enable_forwarding() {
    if [[ $(sysctl -n net.ipv4.ip_forward) != 1 ]]; then
        sysctl -q -w net.ipv4.ip_forward=1 >/dev/null ||
            die "could not set net.ipv4.ip_forward=1 (read-only /proc/sys?)"
        log "set net.ipv4.ip_forward=1"
    fi
}

summary() {
    local docker_version
    docker_version=$(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null || echo '?')
    cat <<EOF
swarm host setup done:
  kernel        $(uname -r)
  docker        $docker_version
  clang         $(clang-19 --version | head -n 1)
  cargo         $(cargo --version | awk '{ print $2 }')
  bpffs         $(findmnt -n -o TARGET -t bpf /sys/fs/bpf)
  ip_forward    $(sysctl -n net.ipv4.ip_forward)
EOF
}

ensure_packages "${PACKAGES[@]}"
check_docker
mount_bpffs
alias_bpffs
check_rust
enable_forwarding
summary
