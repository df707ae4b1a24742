# shellcheck shell=bash
# Helpers shared by scripts/*.sh. Source it; it only defines things.

# The repository root, whatever the caller's working directory.
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export REPO_ROOT

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }

need_root() {
    [[ $(id -u) -eq 0 ]] || die "$(basename "$0") must run as root (it $1)"
}

# Seconds since the epoch, with milliseconds, for timing steps.
now() { date +%s.%3N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# The given Debian packages that are not installed.
missing_packages() {
    local p status
    for p in "$@"; do
        status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
        [[ $status == ii* ]] || printf '%s\n' "$p"
    done
}

# True when apt's package lists lack a candidate for any of the given packages
# (or there are no lists at all), i.e. when `apt-get update` is needed.
lists_stale() {
    local p candidate
    compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || return 0
    for p in "$@"; do
        candidate=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ { print $2 }')
        [[ -n $candidate && $candidate != "(none)" ]] || return 0
    done
    return 1
}

# Install the given Debian packages unless present, updating apt's lists
# only when they lack one of them (a fresh machine has none).
ensure_packages() {
    local missing
    mapfile -t missing < <(missing_packages "$@")
    if ((${#missing[@]} == 0)); then
        log "packages: all $# present"
        return
    fi
    log "packages: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if lists_stale "${missing[@]}"; then
        log "packages: apt-get update"
        apt-get update -qq
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
    mapfile -t missing < <(missing_packages "$@")
    ((${#missing[@]} == 0)) || die "packages still missing after apt-get install: ${missing[*]}"
}

# cargo-deb, the packager scripts/package.sh uses, at the version it was
# written for, from crates.io unless present.
CARGO_DEB_VERSION=3.8.0
ensure_cargo_deb() {
    if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
        log "installing cargo-deb $CARGO_DEB_VERSION"
        cargo install -q --locked "cargo-deb@$CARGO_DEB_VERSION"
    fi
}
