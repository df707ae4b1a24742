#!/usr/bin/env bash
# Builds the container images that tests and the demo need, with no registry
# (the pause image is not among them: the daemon carries it, agent/pause.rs):
#
#   swarm/whoami:latest                     static Rust binary (images/whoami), a test server
#   redis:latest                            Debian redis-server
#   lsapan/docker-swarm-demo-web:latest     Debian python3 + Flask app (images/web)
#   lsapan/docker-swarm-demo-nginx:latest   Debian nginx proxying to web:5000 (images/nginx)
#
# The Debian images are made by mmdebstrap from this machine's own apt sources
# (read at run time) and turned into images by `docker import`.
#
# Each image carries the label swarm.recipe=<sha256 of its recipe: the build
# function below, the helpers it uses, and its input files>. An image whose
# label matches is not rebuilt, so a second run takes seconds.
#
# Every image built is then checked by running it. Live checks use only
# loopback addresses inside containers' own network namespaces.
#
# Usage: scripts/images.sh [--only NAME...] [--force] [--verify | --no-verify]
#   NAME is one of: whoami redis web nginx (or the image's full tag)
#   --force       rebuild even when the recipe label matches
#   --verify      also check images that were cached (default: only new ones)
#   --no-verify   skip all checks
# mmdebstrap hooks are shell snippets that get the rootfs as "$1": the single
# quotes that keep it from expanding here are on purpose.
# shellcheck disable=SC2016
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALL_IMAGES=(whoami redis web nginx)
declare -A TAG=(
    [whoami]=swarm/whoami:latest
    [redis]=redis:latest
    [web]=lsapan/docker-swarm-demo-web:latest
    [nginx]=lsapan/docker-swarm-demo-nginx:latest
)

RUST_TARGET=x86_64-unknown-linux-gnu
BIN_DIR="$REPO_ROOT/target/images/$RUST_TARGET/release"
LABEL=swarm.recipe
VERIFY_PREFIX="swarm-images-verify-$$"
CHECK=""  # what the last verify_* function saw

TMP_DIRS=()
cleanup() {
    set +e # best effort: one failed step must not skip the rest
    local c d
    for c in $(docker ps -aq --filter "name=^$VERIFY_PREFIX-" 2>/dev/null); do
        docker rm -f "$c" >/dev/null 2>&1 || true
    done
    for d in "${TMP_DIRS[@]}"; do
        # An interrupted mmdebstrap may leave proc/sys/dev mounted in its
        # chroot: unmount them, and never let rm cross into another filesystem.
        findmnt -rn -o TARGET | grep -F "$d/" | sort -r | while read -r m; do
            umount -l "$m"
        done
        rm -rf --one-file-system "$d"
    done
}
trap cleanup EXIT

# Makes a temporary directory under /var/tmp, removed on exit, and stores its
# path in TMP. (Not printed: a $(...) subshell would lose TMP_DIRS.)
TMP=""
new_tmp() {
    TMP=$(mktemp -d /var/tmp/swarm-images.XXXXXX)
    TMP_DIRS+=("$TMP")
}

usage() { sed -n '2,/^# *--no-verify/p' "$0" | sed -e 's/^# \{0,1\}//'; }

# ---------------------------------------------------------------------------
# Host facts read at run time: the Debian suite and its apt sources.

# The suite of this host (bookworm, ...), or $SWARM_IMAGES_SUITE.
host_suite() {
    local suite=${SWARM_IMAGES_SUITE:-}
    if [[ -z $suite && -r /etc/os-release ]]; then
        suite=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
    fi
    [[ -n $suite ]] || die "cannot tell the Debian suite: no VERSION_CODENAME in /etc/os-release; set SWARM_IMAGES_SUITE"
    printf '%s\n' "$suite"
}

# Prints a deb822 sources file with this host's apt sources for SUITE and its
# -updates/-security suites, component main only. Third-party repositories
# (other suites or no main component) are left out, since the images do not
# need them and their keys may be missing.
host_sources() {
    local suite=$1 f
    local files=()
    [[ -r /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -r $f ]] && files+=("$f")
    done
    ((${#files[@]})) || return 0
    for f in "${files[@]}"; do
        if [[ $f == *.sources ]]; then
            awk -v suite="$suite" -f <(deb822_filter) "$f"
        else
            awk -v suite="$suite" -f <(oneline_filter) "$f"
        fi
    done
}

# awk program: keep deb822 stanzas of type deb for our suites with main.
deb822_filter() {
    cat <<'AWK'
function ours(s) { return s == suite || index(s, suite "-") == 1 }
BEGIN { RS = ""; FS = "\n" }
{
    types = ""; uris = ""; suites = ""; comps = ""; enabled = "yes"; signed = ""
    field = ""
    for (i = 1; i <= NF; i++) {
        line = $i
        if (line ~ /^#/) continue
        if (line ~ /^[ \t]/) {            # continuation of a multi-line field
            if (field == "signed-by") signed = signed "\n" line
            continue
        }
        n = index(line, ":"); if (!n) continue
        field = tolower(substr(line, 1, n - 1))
        value = substr(line, n + 1); gsub(/^[ \t]+|[ \t]+$/, "", value)
        if (field == "types") types = value
        else if (field == "uris") uris = value
        else if (field == "suites") suites = value
        else if (field == "components") comps = value
        else if (field == "enabled") enabled = tolower(value)
        else if (field == "signed-by") signed = value
    }
    if (enabled == "no" || (" " types " ") !~ / deb / || (" " comps " ") !~ / main /) next
    n = split(suites, s, /[ \t]+/); keep = ""
    for (i = 1; i <= n; i++) if (ours(s[i])) keep = keep (keep == "" ? "" : " ") s[i]
    if (keep == "" || uris == "") next
    printf "Types: deb\nURIs: %s\nSuites: %s\nComponents: main\n", uris, keep
    if (signed != "") printf "Signed-By: %s\n", signed
    printf "\n"
}
AWK
}

# awk program: the same for one-line `deb [opts] URI SUITE COMPONENTS...`.
oneline_filter() {
    cat <<'AWK'
function ours(s) { return s == suite || index(s, suite "-") == 1 }
/^[ \t]*deb[ \t]/ {
    line = $0; sub(/#.*/, "", line); signed = ""
    if (match(line, /\[[^]]*\]/)) {
        opts = substr(line, RSTART + 1, RLENGTH - 2)
        line = substr(line, 1, RSTART - 1) substr(line, RSTART + RLENGTH)
        n = split(opts, o, /[ \t]+/)
        for (i = 1; i <= n; i++) if (o[i] ~ /^signed-by=/) signed = substr(o[i], 11)
    }
    n = split(line, w, /[ \t]+/); start = (w[1] == "") ? 2 : 1
    uri = w[start + 1]; s = w[start + 2]; main = 0
    for (i = start + 3; i <= n; i++) if (w[i] == "main") main = 1
    if (!ours(s) || !main || uri == "") next
    printf "Types: deb\nURIs: %s\nSuites: %s\nComponents: main\n", uri, s
    if (signed != "") printf "Signed-By: %s\n", signed
    printf "\n"
}
AWK
}

# apt options the host's apt uses that mmdebstrap's own apt would otherwise
# lack: a snapshot mirror needs its Release files' expiry ignored, like here.
host_aptopts() {
    local opt val
    for opt in Acquire::Check-Valid-Until Acquire::Check-Date; do
        val=$(apt-config dump "$opt" 2>/dev/null | awk -v o="$opt" '$1 == o { gsub(/[";]/, "", $2); print $2 }')
        if [[ -n $val ]]; then
            printf -- '--aptopt=%s "%s"\n' "$opt" "$val"
        fi
    done
}

# ---------------------------------------------------------------------------
# Building blocks. A build function's recipe hash covers the helpers it names
# in its RECIPE_DEPS entry, so changing a helper rebuilds what uses it.

# docker import of a tarball, labelled with the recipe hash, replacing the
# previous image of that tag (whose id is then removed if unused).
import_tarball() {
    local tar=$1 tag=$2 hash=$3
    shift 3
    local old new
    old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
    local changes=()
    local c
    for c in "$@" "LABEL $LABEL=$hash"; do
        changes+=(--change "$c")
    done
    new=$(docker import "${changes[@]}" --message "built by scripts/images.sh" "$tar" "$tag")
    if [[ -n $old && $old != "$new" ]]; then
        docker rmi "$old" >/dev/null 2>&1 || true
    fi
}

# An image holding one static binary as /NAME plus optional extra files.
# Args: tag hash binary name stage-hook [docker-changes...]
static_image() {
    local tag=$1 hash=$2 bin=$3 name=$4 hook=$5
    shift 5
    local tmp stage
    new_tmp
    tmp=$TMP
    stage="$tmp/rootfs"
    mkdir -p "$stage"
    install -m 0755 "$bin" "$stage/$name"
    if have strip; then strip --strip-all "$stage/$name"; fi
    "$hook" "$stage"
    tar --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name \
        -C "$stage" -cf "$tmp/rootfs.tar" .
    import_tarball "$tmp/rootfs.tar" "$tag" "$hash" "$@"
}

# A Debian minbase rootfs with extra packages, made by mmdebstrap from the
# host's apt sources, then imported.
# Args: tag hash packages(comma-separated) hooks-array-name [docker-changes...]
debian_image() {
    local tag=$1 hash=$2 packages=$3 hooks_var=$4
    shift 4
    local -n hooks_ref=$hooks_var
    local tmp
    new_tmp
    tmp=$TMP
    local args=(
        --variant=minbase --mode=root --format=tar
        # Merge /usr by symlinks made up front: else bookworm pulls in the
        # usrmerge package, and with it perl (~50MB).
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
        --include="$packages"
        # Containers need no crash-safe package installs (Debian's own
        # container images set this too); it saves many fsyncs.
        --dpkgopt=force-unsafe-io
        # Docs, man pages and translations are dead weight in an image.
        --dpkgopt='path-exclude=/usr/share/doc/*'
        --dpkgopt='path-include=/usr/share/doc/*/copyright'
        --dpkgopt='path-exclude=/usr/share/man/*'
        --dpkgopt='path-exclude=/usr/share/info/*'
        --dpkgopt='path-exclude=/usr/share/locale/*'
        "${APT_OPTS[@]}"
        # Share downloaded packages between this run's images (the cache is
        # removed at exit). Keep the essential set's .debs for that, too.
        --skip=essential/unlink
        --setup-hook='mkdir -p "$1"/var/cache/apt/archives'
        --setup-hook="sync-in $DEB_CACHE /var/cache/apt/archives/"
        "${hooks_ref[@]}"
        --customize-hook="sync-out /var/cache/apt/archives $DEB_CACHE"
        --customize-hook='rm -rf "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/* "$1"/var/log/* "$1"/tmp/*'
    )
    if ! TMPDIR=$tmp mmdebstrap "${args[@]}" "$SUITE" "$tmp/rootfs.tar" "$SOURCES_FILE" \
        >"$tmp/mmdebstrap.log" 2>&1; then
        tail -n 30 "$tmp/mmdebstrap.log" >&2
        die "mmdebstrap failed for $tag (last lines above)"
    fi
    # An imported image has no environment at all; give it Debian's PATH.
    import_tarball "$tmp/rootfs.tar" "$tag" "$hash" \
        'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' "$@"
}

# A hook line for mmdebstrap that copies a repo file into the rootfs.
put_file() { # src dst mode
    printf -- '--customize-hook=install -D -m %s %q "$1"%q\n' "$3" "$REPO_ROOT/$1" "$2"
}

# ---------------------------------------------------------------------------
# The recipes. Each build_NAME takes (tag, hash); RECIPE_DEPS lists the
# helper functions and repo files (relative paths or globs) it depends on.

declare -A RECIPE_DEPS=(
    [whoami]="import_tarball static_image whoami_files BIN:swarm-whoami"
    [redis]="import_tarball debian_image DEBIAN"
    [web]="import_tarball debian_image put_file DEBIAN images/web/*"
    [nginx]="import_tarball debian_image put_file DEBIAN images/nginx/*"
)

whoami_files() {
    local root=$1
    mkdir -p "$root/etc" "$root/tmp"
    chmod 1777 "$root/tmp"
    : >"$root/etc/hosts"
    printf 'root:x:0:0:root:/:/whoami\nnobody:x:65534:65534:nobody:/nonexistent:/whoami\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
}

build_whoami() {
    static_image "$1" "$2" "$BIN_DIR/swarm-whoami" whoami whoami_files \
        'ENTRYPOINT ["/whoami"]' 'EXPOSE 80'
}

build_redis() {
    local hooks=(--customize-hook='mkdir -p "$1/data"')
    debian_image "$1" "$2" redis-server hooks \
        'WORKDIR /data' 'EXPOSE 6379' \
        'CMD ["redis-server", "--protected-mode", "no", "--bind", "0.0.0.0"]'
}

build_web() {
    local hooks
    mapfile -t hooks < <(put_file images/web/wsgi.py /app/wsgi.py 0644)
    debian_image "$1" "$2" python3,python3-flask,python3-redis,gunicorn hooks \
        'WORKDIR /app' 'ENV PYTHONUNBUFFERED=1' 'EXPOSE 5000' \
        'CMD ["gunicorn", "--bind", "0.0.0.0:5000", "wsgi:app"]'
}

build_nginx() {
    local hooks
    mapfile -t hooks < <(
        put_file images/nginx/nginx.conf /etc/nginx/nginx.conf 0644
        put_file images/nginx/docker-entrypoint.sh /docker-entrypoint.sh 0755
    )
    # The package's default site is not included by our nginx.conf; drop it
    # so nobody mistakes it for live config.
    hooks+=(--customize-hook='rm -f "$1"/etc/nginx/sites-enabled/default')
    debian_image "$1" "$2" nginx-light hooks \
        'EXPOSE 80' 'ENTRYPOINT ["/docker-entrypoint.sh"]' 'CMD ["nginx"]'
}

# sha256 over everything the recipe of image $1 depends on.
recipe_hash() {
    local name=$1 dep f
    {
        printf 'image %s %s\n' "$name" "${TAG[$name]}"
        declare -f "build_$name"
        for dep in ${RECIPE_DEPS[$name]}; do
            case $dep in
            BIN:*)
                printf 'binary %s ' "${dep#BIN:}"
                sha256sum <"$BIN_DIR/${dep#BIN:}"
                ;;
            DEBIAN)
                printf 'suite %s\n' "$SUITE"
                printf '%s\n' "${APT_OPTS[@]}"
                cat "$SOURCES_FILE"
                ;;
            images/*)
                for f in "$REPO_ROOT"/$dep; do
                    printf 'file %s ' "${f#"$REPO_ROOT"/}"
                    sha256sum <"$f"
                done
                ;;
            *) declare -f "$dep" ;;
            esac
        done
    } | sha256sum | cut -c1-64
}

# ---------------------------------------------------------------------------
# Checks: run each image and look at what it does.

vname() { printf '%s-%s\n' "$VERIFY_PREFIX" "$1"; }
cpid() { docker inspect -f '{{.State.Pid}}' "$1"; }

# Runs a command in container $1's network namespace (host tools, the
# container's loopback), retrying for up to ~5s while the server starts.
in_netns_retry() {
    local c=$1 pid _
    shift
    pid=$(cpid "$c")
    for _ in $(seq 50); do
        if nsenter -t "$pid" -n "$@" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    nsenter -t "$pid" -n "$@"
}

verify_whoami() {
    local c out t0 code
    c=$(vname whoami)
    docker run -d --name "$c" --hostname whoami-check --network none -e UDP_PORT=81 \
        "${TAG[whoami]}" >/dev/null
    out=$(in_netns_retry "$c" curl -fsS --max-time 5 http://127.0.0.1:80/check)
    [[ $out == *"hostname: whoami-check"* && $out == *"peer: 127.0.0.1:"* ]] ||
        die "whoami: unexpected HTTP answer: $out"
    # dd reads exactly one datagram; bash's own `read` would take one byte of it.
    out=$(nsenter -t "$(cpid "$c")" -n bash -c \
        'exec 3<>/dev/udp/127.0.0.1/81; printf x >&3; timeout 3 dd bs=512 count=1 <&3 2>/dev/null')
    [[ $out == *"hostname: whoami-check"* ]] || die "whoami: unexpected UDP answer: $out"
    t0=$(now)
    docker stop -t 10 "$c" >/dev/null
    code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
    [[ $code == 0 ]] || die "whoami: exit code $code after SIGTERM (want 0)"
    docker rm "$c" >/dev/null
    CHECK="HTTP and UDP answer with hostname and peer; stops on SIGTERM in $(elapsed "$t0")"
}

verify_redis() {
    local out
    out=$(docker run --rm "${TAG[redis]}" redis-server --version) || die "redis: redis-server --version failed"
    CHECK="$(awk '{ print $1, $3 }' <<<"$out")"
}

# A DNS server for the checks, run with the web image's python3 on
# 127.0.0.1:53 in the checks' own network namespace: it answers A queries
# for the bare names `web` and `redis` with 127.0.0.1, as the cluster's DNS
# would with a VIP, and NXDOMAIN (or no data) for anything else.
FAKE_DNS='
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
while True:
    q, peer = s.recvfrom(512)
    if len(q) < 17:
        continue
    i, labels = 12, []
    while i < len(q) and q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode(errors="replace").lower())
        i += 1 + q[i]
    qtype = int.from_bytes(q[i + 1:i + 3], "big")
    question = q[12:i + 5]
    known = labels in (["web"], ["redis"])
    answer = b""
    if known and qtype == 1:
        answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04\x7f\x00\x00\x01"
    flags = b"\x81\x80" if known else b"\x81\x83"
    an = (1 if answer else 0).to_bytes(2, "big")
    s.sendto(q[:2] + flags + b"\x00\x01" + an + b"\x00\x00\x00\x00" + question + answer, peer)
'

# The tutorial's stack in one network namespace held by a redis container,
# with the fake DNS above: nginx:80 -> web:5000 -> redis:6379, all on
# 127.0.0.1. Checks the counter, the secret and Redis failures.
verify_stack() {
    local holder secret_dir out n1 n2
    holder=$(vname redis)
    new_tmp
    secret_dir=$TMP
    printf 'check-secret\n' >"$secret_dir/db_password"
    # (Quiet: docker warns that a loopback DNS server may not work; here it does.)
    docker run -d --name "$holder" --network none --dns 127.0.0.1 "${TAG[redis]}" >/dev/null 2>&1 ||
        die "stack: could not start redis: $(docker run -d --network none --dns 127.0.0.1 "${TAG[redis]}" 2>&1)"
    local net=(--network "container:$holder")
    docker run -d --name "$(vname dns)" "${net[@]}" "${TAG[web]}" python3 -c "$FAKE_DNS" >/dev/null
    docker run -d --name "$(vname web)" "${net[@]}" \
        -v "$secret_dir/db_password:/run/secrets/db_password:ro" "${TAG[web]}" >/dev/null
    docker run -d --name "$(vname nginx)" "${net[@]}" "${TAG[nginx]}" >/dev/null
    # A second web on :5001 pointed at a port where no Redis listens.
    docker run -d --name "$(vname web-noredis)" "${net[@]}" -e REDIS_PORT=1 "${TAG[web]}" \
        gunicorn --bind 127.0.0.1:5001 wsgi:app >/dev/null

    out=$(in_netns_retry "$holder" curl -fsS --max-time 5 http://127.0.0.1:80/) ||
        die "stack: no answer through nginx; logs: $(docker logs "$(vname nginx)" 2>&1 | tail -5)"
    n1=$(sed -n 's/.*id="requests">\([0-9]*\)<.*/\1/p' <<<"$out")
    [[ $out == *'id="secret">check-secret<'* ]] || die "stack: page lacks the secret: $out"
    out=$(nsenter -t "$(cpid "$holder")" -n curl -fsS --max-time 5 http://127.0.0.1:80/)
    n2=$(sed -n 's/.*id="requests">\([0-9]*\)<.*/\1/p' <<<"$out")
    [[ -n $n1 && $n2 == $((n1 + 1)) ]] || die "stack: counter did not advance ($n1 -> $n2)"

    out=$(in_netns_retry "$holder" curl -sS --max-time 10 -w '\n%{http_code}' http://127.0.0.1:5001/)
    [[ $out == *"Could not update the request counter"* && $out == *$'\n500' ]] ||
        die "stack: want a 500 text page without Redis, got: $out"
    docker rm -f "$(vname web-noredis)" "$(vname nginx)" "$(vname web)" "$(vname dns)" "$holder" >/dev/null
    CHECK="nginx -> web -> redis: counter $n1 -> $n2, secret shown; 500 page without redis"
}

verify_web() {
    docker run --rm "${TAG[web]}" python3 -c 'import flask, redis, gunicorn, wsgi' ||
        die "web: imports failed"
    CHECK="flask, redis, gunicorn and wsgi import"
}

verify_nginx() {
    local out
    out=$(docker run --rm "${TAG[nginx]}" nginx -t 2>&1) || die "nginx: nginx -t failed: $out"
    CHECK="nginx -t: configuration ok"
}

# ---------------------------------------------------------------------------

build_binaries() {
    # rustup's default place, which a non-login shell may lack on PATH.
    if ! have cargo && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
        PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    fi
    have cargo || die "cargo not found; run scripts/setup.sh"
    log "cargo build (static) swarm-whoami"
    (
        cd "$REPO_ROOT"
        RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$REPO_ROOT/target/images" \
            cargo build -q --release --target "$RUST_TARGET" -p swarm-whoami
    ) || die "cargo build of swarm-whoami failed (if another workspace member's manifest is broken, cargo cannot even resolve -p)"
}

main() {
    local only=() force=0 verify=built name
    while (($#)); do
        case $1 in
        --only)
            shift
            while (($#)) && [[ $1 != --* ]]; do
                only+=("$1")
                shift
            done
            ((${#only[@]})) || die "--only needs at least one image name"
            continue
            ;;
        --force) force=1 ;;
        --verify) verify=all ;;
        --no-verify) verify=none ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown argument: $1 (see --help)" ;;
        esac
        shift
    done

    local selected=()
    if ((${#only[@]})); then
        local want found
        for want in "${only[@]}"; do
            found=""
            for name in "${ALL_IMAGES[@]}"; do
                if [[ $want == "$name" || $want == "${TAG[$name]}" || $want == "${TAG[$name]%:latest}" ]]; then
                    found=$name
                fi
            done
            [[ -n $found ]] || die "unknown image '$want' (known: ${ALL_IMAGES[*]})"
            selected+=("$found")
        done
    else
        selected=("${ALL_IMAGES[@]}")
    fi

    need_root "runs mmdebstrap in root mode and checks images inside their network namespaces"
    if ! have docker || ! timeout 20 docker info >/dev/null 2>&1; then
        die "Docker Engine does not answer; run scripts/setup.sh"
    fi

    local t_all needs_debian=0 needs_bins=0
    t_all=$(now)
    for name in "${selected[@]}"; do
        case $name in
        whoami) needs_bins=1 ;;
        *) needs_debian=1 ;;
        esac
    done
    if ((needs_bins)); then build_binaries; fi
    if ((needs_debian)); then
        have mmdebstrap || die "mmdebstrap not found; run scripts/setup.sh"
        SUITE=$(host_suite)
        new_tmp
        SOURCES_FILE="$TMP/host.sources"
        host_sources "$SUITE" >"$SOURCES_FILE"
        [[ -s $SOURCES_FILE ]] ||
            die "no apt source for '$SUITE' (component main) found in /etc/apt/sources.list{,.d/*}"
        mapfile -t APT_OPTS < <(host_aptopts)
        new_tmp
        DEB_CACHE=$TMP
    fi

    local built=() cached=() hash current t0
    for name in "${selected[@]}"; do
        hash=$(recipe_hash "$name")
        current=$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "${TAG[$name]}" 2>/dev/null || true)
        if ((!force)) && [[ $current == "$hash" ]]; then
            cached+=("$name")
            continue
        fi
        t0=$(now)
        log "building ${TAG[$name]}"
        "build_$name" "${TAG[$name]}" "$hash"
        log "built ${TAG[$name]} in $(elapsed "$t0")"
        built+=("$name")
    done

    local to_check=()
    case $verify in
    built) to_check=("${built[@]}") ;;
    all) to_check=("${selected[@]}") ;;
    esac
    local stack=0
    for name in "${to_check[@]}"; do
        "verify_$name"
        printf '  check %-7s %s\n' "$name" "$CHECK"
        if [[ $name == web || $name == nginx || $name == redis ]]; then stack=1; fi
    done
    if ((stack)); then
        local missing=""
        for name in redis web nginx; do
            docker image inspect "${TAG[$name]}" >/dev/null 2>&1 || missing+=" $name"
        done
        if [[ -z $missing ]]; then
            verify_stack
            printf '  check %-7s %s\n' stack "$CHECK"
        else
            warn "skipping the stack check: missing image(s)$missing"
        fi
    fi

    printf '\nimages (%s):\n' "$(elapsed "$t_all")"
    for name in "${selected[@]}"; do
        local state=cached
        if [[ " ${built[*]} " == *" $name "* ]]; then state=built; fi
        printf '  %-6s %-40s %s\n' "$state" "${TAG[$name]}" \
            "$(docker image inspect -f '{{.Size}}' "${TAG[$name]}" | numfmt --to=iec)"
    done
}

main "$@"
