#!/usr/bin/env bash
# lab.sh: several swarm hosts on one machine (see DESIGN.md, section 4).
#
# Each node n<i> is a network namespace `swl-n<i>` running its own
# `swarm daemon`. All namespaces hang off one bridge `swl-br0` in the host
# namespace, on the benchmarking range 198.18.0.0/15. No namespace gets a
# default route, so lab traffic never leaves the lab. This is a user-facing
# tool with a stable interface: run `scripts/lab.sh help` for it.
set -euo pipefail

readonly PROG=lab.sh
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
REPO_DIR=$(dirname -- "$SCRIPT_DIR")
readonly REPO_DIR

readonly BRIDGE=swl-br0
readonly BRIDGE_ADDR=198.18.0.1/24
readonly CLIENT_NS=swl-client
readonly CLIENT_ADDR=198.18.0.2/24
readonly NETNS_DIR=/run/netns           # where `ip netns` keeps named namespaces
readonly RUN_DIR=/run/swarm-lab
readonly DATA_DIR=/var/lib/swarm-lab
readonly SECRETS_DIR=$RUN_DIR/secrets   # tmpfs: tasks' secret files, a directory per node
readonly LOG_DIR=/var/log/swarm-lab
readonly LOCK_FILE=/run/lock/swarm-lab.lock
readonly MAX_NODES=244                  # 198.18.0.(10+i) must stay <= 254
readonly START_TIMEOUT=20               # seconds to wait for a daemon's socket
readonly STOP_TIMEOUT=10                # seconds to wait after SIGTERM
readonly IPT_CHAIN=DOCKER-USER
readonly IPT_COMMENT=swarm-lab
# ACCEPT rules for the lab bridge, in the order they end up at the top of the chain.
readonly -a IPT_RULES=(
    "-i $BRIDGE -m comment --comment $IPT_COMMENT -j ACCEPT"
    "-o $BRIDGE -m comment --comment $IPT_COMMENT -j ACCEPT"
)
# Markers (in RUN_DIR) recording what the lab added to iptables besides its rules.
readonly MARK_CHAIN=iptables-created-chain
readonly MARK_JUMP=iptables-added-jump
readonly BPF_DIR=/sys/fs/bpf/swarm-lab   # pinned maps and links of lab daemons
readonly METRICS_PORT=9323              # every daemon serves /metrics on its address (docker's port)
readonly MODE_FILE=dataplane            # in RUN_DIR: the data-plane mode 'up' chose

usage() {
    cat <<EOF
Usage: scripts/lab.sh COMMAND [ARGS...]

Several swarm hosts on one machine. Must be run as root.

Commands:
  up N [--dataplane xdp|iptables]
                     Create nodes n1..nN and the client namespace, and start
                     each node's daemon with that data plane (default xdp;
                     kept for later 'up' and 'start' runs until 'down').
                     Idempotent: creates only what is
                     missing, restarts stopped daemons on their existing data
                     dir, and adds nodes when N grows (it never removes nodes;
                     use 'down'). A cut link stays cut (use 'heal').
  down               Stop all lab daemons (SIGTERM, SIGKILL after ${STOP_TIMEOUT}s), remove
                     the Docker containers (and networks) that lab nodes
                     created, kill leftover processes in lab namespaces, delete
                     namespaces, veths, bridge and iptables rules, and remove
                     $RUN_DIR and $DATA_DIR. Logs in $LOG_DIR
                     are KEPT (new runs append to them). Succeeds if nothing exists.
  status             Table of nodes: NODE NETNS ADDRESS LINK DAEMON SOCKET.
  exec NODE CMD...   Run CMD inside NODE's namespace. For n<i>, SWARM_HOST is set
                     to unix://$RUN_DIR/n<i>.sock; for 'client' SWARM_HOST is
                     unset. The exit code of CMD is propagated.
  kill n<i>          kill -9 the node's daemon (crash simulation; the data dir
                     and a stale socket are left behind).
  start n<i>         Start the node's daemon again and wait for its socket.
  cut NODE           Take NODE's underlay link down (host-side veth).
  heal NODE          Bring NODE's underlay link back up and wait until it forwards.
  logs [-f] [-n LINES] n<i>
                     Show the last LINES (default 100) lines of the node's log;
                     -f follows it.
  help               Show this text.

NODE is n<i> (a node created by 'up') or 'client'.

Layout:
  bridge   $BRIDGE in the host namespace, ${BRIDGE_ADDR}
  node i   netns swl-n<i>, host veth swl-n<i> <-> eth0 198.18.0.<10+i>/24,
           no default route, net.ipv4.ip_forward=1
  client   netns $CLIENT_NS, host veth $CLIENT_NS <-> eth0 ${CLIENT_ADDR}
  daemon   ip netns exec swl-n<i> \$SWARM_BIN daemon --data-dir $DATA_DIR/n<i>
             --socket $RUN_DIR/n<i>.sock --advertise-addr 198.18.0.<10+i>
             --hostname n<i> --gateway-subnet 198.19.<i>.0/24
             --dataplane MODE --pin-dir $BPF_DIR/n<i>
             --secrets-dir $SECRETS_DIR --metrics-addr 198.18.0.<10+i>:$METRICS_PORT
             \$SWARM_DAEMON_ARGS
           pid in $RUN_DIR/n<i>.pid, log appended to $LOG_DIR/n<i>.log
  secrets  a tmpfs at $SECRETS_DIR (host mount namespace), a directory per node
  netfilter  ACCEPT rules for -i/-o $BRIDGE at the top of the $IPT_CHAIN chain
           (Docker's FORWARD policy is DROP), removed by 'down'.

Environment:
  SWARM_BIN          daemon binary (default: <repo>/target/debug/swarm)
  SWARM_DAEMON_ARGS  extra daemon arguments, split on whitespace
  SWARM_DAEMON_WRAP  a command the daemon is run through, split on whitespace
                     (e.g. setpriv with the systemd unit's capability set)
EOF
}

# ---------------------------------------------------------------- helpers

die() { echo "$PROG: error: $*" >&2; exit 1; }
usage_error() { echo "$PROG: $*" >&2; echo "Run 'scripts/lab.sh help' for usage." >&2; exit 2; }
warn() { echo "$PROG: warning: $*" >&2; }
info() { echo "$PROG: $*"; }

require_root() {
    if [[ $EUID -ne 0 ]]; then
        die "must be run as root (it creates network namespaces, links and iptables rules); try: sudo $0 $*"
    fi
}

require_tools() {
    local t
    for t in ip sysctl setsid flock; do
        command -v "$t" >/dev/null 2>&1 || die "required tool '$t' not found in PATH"
    done
}

# Serialise commands that change the lab. fd 9 is closed for daemons we start.
take_lock() {
    mkdir -p -- "$(dirname -- "$LOCK_FILE")"
    exec 9>>"$LOCK_FILE"
    flock -w 120 9 || die "another lab.sh command holds $LOCK_FILE; try again later"
}

ns_exists() { [[ -e $NETNS_DIR/$1 ]]; }
link_exists() { [[ -e /sys/class/net/$1 ]]; }

node_index() { echo "${1#n}"; }
node_ns() { echo "swl-$1"; }
node_addr() { echo "198.18.0.$((10 + $1))"; }
sock_path() { echo "$RUN_DIR/$1.sock"; }
pid_path() { echo "$RUN_DIR/$1.pid"; }
log_path() { echo "$LOG_DIR/$1.log"; }

# now_ms: monotonic-enough wall clock in milliseconds (bash 5 EPOCHREALTIME).
now_ms() {
    local t=${EPOCHREALTIME//[!0-9]/}
    echo $((10#$t / 1000))
}

# alive PID: the process exists and is not a zombie.
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ -n $stat && ${stat%% *} != [ZX] ]]
}

# daemon_pid NODE: print the pid of NODE's running daemon, or fail. The pid
# file is only trusted if that process runs with NODE's socket path (pid reuse).
daemon_pid() {
    local pf pid
    pf=$(pid_path "$1")
    [[ -r $pf ]] || return 1
    pid=$(cat -- "$pf" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$(sock_path "$1")" || return 1
    echo "$pid"
}

# All node indices known to the lab (namespaces, pid files, data dirs), sorted.
list_nodes() {
    local f name
    {
        for f in "$NETNS_DIR"/swl-n* "$RUN_DIR"/n*.pid "$DATA_DIR"/n*; do
            [[ -e $f ]] || continue
            name=${f##*/}
            name=${name#swl-}
            name=${name%.pid}
            [[ $name =~ ^n[1-9][0-9]*$ ]] && echo "${name#n}"
        done
        true
    } | sort -n -u
}

check_node_name() {
    [[ $1 =~ ^n[1-9][0-9]*$ ]] || usage_error "invalid node name '$1' (expected n<i>, e.g. n1)"
}

# require_node NODE: NODE is n<i> and its namespace exists.
require_node() {
    check_node_name "$1"
    ns_exists "$(node_ns "$1")" || die "no such node: $1 (namespace $(node_ns "$1") does not exist; run: scripts/lab.sh up N)"
}

# require_target NODE|client: print "<netns> <host veth>".
require_target() {
    if [[ $1 == client ]]; then
        ns_exists "$CLIENT_NS" || die "the client namespace $CLIENT_NS does not exist; run: scripts/lab.sh up N"
        echo "$CLIENT_NS $CLIENT_NS"
    else
        require_node "$1"
        echo "$(node_ns "$1") $(node_ns "$1")"
    fi
}

resolve_swarm_bin() {
    SWARM_BIN=${SWARM_BIN:-$REPO_DIR/target/debug/swarm}
    if [[ $SWARM_BIN != */* ]]; then
        local found
        found=$(type -P -- "$SWARM_BIN") || die "swarm binary '$SWARM_BIN' not found in PATH
  build it with: cargo build -p swarm-orchestrator   (or set SWARM_BIN)"
        SWARM_BIN=$found
    fi
    [[ $SWARM_BIN == /* ]] || SWARM_BIN=$PWD/$SWARM_BIN
    if [[ ! -f $SWARM_BIN || ! -x $SWARM_BIN ]]; then
        die "swarm binary not found or not executable: $SWARM_BIN
  build it with: cargo build -p swarm-orchestrator   (or set SWARM_BIN)"
    fi
}

# ---------------------------------------------------------------- network

ensure_bridge() {
    if ! link_exists "$BRIDGE"; then
        ip link add "$BRIDGE" type bridge
    elif [[ ! -d /sys/class/net/$BRIDGE/bridge ]]; then
        die "$BRIDGE exists but is not a bridge; remove it first"
    fi
    if ! ip -4 -o addr show dev "$BRIDGE" | grep -qF " inet $BRIDGE_ADDR "; then
        ip addr add "$BRIDGE_ADDR" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
}

ensure_ns() {
    ns_exists "$1" || ip netns add "$1"
    ip -n "$1" link set lo up
}

# ensure_veth HOST_IF NS ADDR/PREFIX: veth HOST_IF (on the bridge) <-> eth0 in NS.
# An existing host end keeps its admin state, so a cut link stays cut.
ensure_veth() {
    local host_if=$1 ns=$2 addr=$3 peer_idx eth0 created=0
    if link_exists "$host_if"; then
        peer_idx=$(cat "/sys/class/net/$host_if/iflink")
        eth0=$(ip -n "$ns" -o link show dev eth0 2>/dev/null || true)
        if [[ -z $eth0 || ${eth0%%:*} != "$peer_idx" ]]; then
            warn "$host_if is not paired with eth0 in $ns; recreating it"
            ip link del "$host_if"
        fi
    fi
    if ! link_exists "$host_if"; then
        if ip -n "$ns" link show dev eth0 >/dev/null 2>&1; then
            ip -n "$ns" link del eth0
        fi
        ip link add "$host_if" type veth peer name eth0 netns "$ns"
        created=1
    fi
    ip link set "$host_if" master "$BRIDGE"
    if ((created)); then
        ip link set "$host_if" up
    elif ! host_link_up "$host_if"; then
        info "${ns#swl-}: link is cut; leaving it cut (run: scripts/lab.sh heal ${ns#swl-})"
    fi
    if ! ip -n "$ns" -4 -o addr show dev eth0 | grep -qF " inet $addr "; then
        ip -n "$ns" addr add "$addr" dev eth0
    fi
    ip -n "$ns" link set eth0 up
}

# host_link_up IF: IF is administratively up (IFF_UP in the host namespace).
host_link_up() {
    local flags
    flags=$(cat "/sys/class/net/$1/flags" 2>/dev/null) || return 1
    ((flags & 1))
}

# link_state HOST_IF NS: up, down or cut.
link_state() {
    local host_if=$1 ns=$2 line flags
    link_exists "$host_if" || { echo down; return; }
    host_link_up "$host_if" || { echo cut; return; }
    line=$(ip -n "$ns" -o link show dev eth0 2>/dev/null) || { echo down; return; }
    flags=${line#*<}
    flags=,${flags%%>*},
    if [[ $flags == *,UP,* && $flags == *,LOWER_UP,* ]]; then echo up; else echo down; fi
}

ns_address() {
    local a
    a=$(ip -n "$1" -4 -o addr show dev eth0 2>/dev/null | awk '{print $4; exit}') || true
    echo "${a%/*}"
}

# ---------------------------------------------------------------- iptables

ipt() { iptables -w "$@"; }

ensure_iptables() {
    if ! command -v iptables >/dev/null 2>&1; then
        warn "iptables not found; not adding ACCEPT rules for $BRIDGE (bridged lab traffic may be dropped if net.bridge.bridge-nf-call-iptables=1)"
        return 0
    fi
    if ! ipt -n -L "$IPT_CHAIN" >/dev/null 2>&1; then
        ipt -N "$IPT_CHAIN"
        touch "$RUN_DIR/$MARK_CHAIN"
    fi
    if ! ipt -C FORWARD -j "$IPT_CHAIN" 2>/dev/null; then
        ipt -I FORWARD 1 -j "$IPT_CHAIN"
        touch "$RUN_DIR/$MARK_JUMP"
    fi
    local i rule
    for ((i = ${#IPT_RULES[@]} - 1; i >= 0; i--)); do
        read -r -a rule <<<"${IPT_RULES[i]}"
        if ! ipt -C "$IPT_CHAIN" "${rule[@]}" 2>/dev/null; then
            ipt -I "$IPT_CHAIN" 1 "${rule[@]}"
        fi
    done
}

remove_iptables() {
    command -v iptables >/dev/null 2>&1 || return 0
    ipt -n -L "$IPT_CHAIN" >/dev/null 2>&1 || return 0
    local r rule
    for r in "${IPT_RULES[@]}"; do
        read -r -a rule <<<"$r"
        while ipt -C "$IPT_CHAIN" "${rule[@]}" 2>/dev/null; do
            ipt -D "$IPT_CHAIN" "${rule[@]}"
        done
    done
    # Undo the chain and the jump only if the lab added them and nobody uses them since.
    if [[ -e $RUN_DIR/$MARK_CHAIN ]] && [[ $(ipt -S "$IPT_CHAIN" 2>/dev/null | wc -l) -eq 1 ]]; then
        while ipt -C FORWARD -j "$IPT_CHAIN" 2>/dev/null; do
            ipt -D FORWARD -j "$IPT_CHAIN"
        done
        ipt -X "$IPT_CHAIN" || warn "could not delete chain $IPT_CHAIN"
    elif [[ -e $RUN_DIR/$MARK_JUMP ]] && ipt -C FORWARD -j "$IPT_CHAIN" 2>/dev/null; then
        ipt -D FORWARD -j "$IPT_CHAIN"
    fi
}

iptables_state() {
    command -v iptables >/dev/null 2>&1 || { echo "iptables not found"; return; }
    local r rule n=0
    for r in "${IPT_RULES[@]}"; do
        read -r -a rule <<<"$r"
        ipt -C "$IPT_CHAIN" "${rule[@]}" 2>/dev/null && n=$((n + 1))
    done
    echo "$n of ${#IPT_RULES[@]} ACCEPT rules for $BRIDGE in $IPT_CHAIN"
}

# ---------------------------------------------------------------- daemons

# True if some process listens on unix socket path $1 (host or node namespace $2).
socket_in_use() {
    { ip netns exec "$2" ss -xlnH 2>/dev/null || true; ss -xlnH 2>/dev/null || true; } |
        awk -v p="$1" '$5 == p { found = 1 } END { exit !found }'
}

# launch_daemon NODE: start NODE's daemon in the background; prints the launcher pid.
launch_daemon() {
    local node=$1 i ns sock pf log extra=() wrap=()
    i=$(node_index "$node")
    ns=$(node_ns "$node")
    sock=$(sock_path "$node")
    pf=$(pid_path "$node")
    log=$(log_path "$node")
    if [[ -e $sock || -L $sock ]]; then
        if socket_in_use "$sock" "$ns"; then
            die "$node: $sock is held by a process the lab did not start; stop it first"
        fi
        rm -f -- "$sock"
    fi
    rm -f -- "$pf"
    mkdir -p -- "$DATA_DIR/$node" "$RUN_DIR" "$LOG_DIR"
    # Secret files go on a tmpfs that dockerd must see: a mount the daemon
    # made itself inside 'ip netns exec' would stay in that mount namespace.
    mkdir -p -- "$SECRETS_DIR"
    if ! mountpoint -q -- "$SECRETS_DIR"; then
        mount -t tmpfs -o mode=0700,size=64m swarm-lab-secrets "$SECRETS_DIR" ||
            die "cannot mount a tmpfs for secrets at $SECRETS_DIR"
    fi
    read -r -a extra <<<"${SWARM_DAEMON_ARGS:-}"
    read -r -a wrap <<<"${SWARM_DAEMON_WRAP:-}"
    local args=(daemon --data-dir "$DATA_DIR/$node" --socket "$sock"
        --advertise-addr "$(node_addr "$i")" --hostname "$node"
        --gateway-subnet "198.19.$i.0/24" --dataplane "$(lab_mode)"
        --pin-dir "$BPF_DIR/$node" --secrets-dir "$SECRETS_DIR"
        --metrics-addr "$(node_addr "$i"):$METRICS_PORT" "${extra[@]}")
    printf '=== %s lab.sh: starting %s: ip netns exec %s %s %s\n' \
        "$(date '+%Y-%m-%dT%H:%M:%S%z')" "$node" "$ns" "${wrap[*]} $SWARM_BIN" "${args[*]}" >>"$log"
    # The shell writes its own pid, then execs the daemon, so the pid file names
    # the daemon itself. No lab fd (the lock) leaks into the daemon.
    (
        cd /
        # shellcheck disable=SC2016  # $$ and $@ are for the inner sh
        exec setsid ip netns exec "$ns" \
            sh -c 'echo $$ >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' \
            "$pf" "${wrap[@]}" "$SWARM_BIN" "${args[@]}"
    ) </dev/null >>"$log" 2>&1 9>&- &
    echo $!
}

# wait_daemon NODE LAUNCHER_PID DEADLINE_MS: wait until the daemon is alive and its
# socket exists. On failure print the log tail, kill what is left, and fail.
wait_daemon() {
    local node=$1 launcher=$2 deadline=$3 sock pid reason
    sock=$(sock_path "$node")
    while :; do
        if pid=$(daemon_pid "$node"); then
            if [[ -S $sock ]]; then
                info "$node: daemon running (pid $pid, socket $sock)"
                return 0
            fi
        elif ! alive "$launcher"; then
            reason="daemon exited during startup"
            break
        fi
        if (($(now_ms) >= deadline)); then
            reason="socket $sock did not appear within ${START_TIMEOUT}s"
            break
        fi
        sleep 0.1
    done
    echo "$PROG: error: $node: $reason; last 20 lines of $(log_path "$node"):" >&2
    tail -n 20 -- "$(log_path "$node")" 2>/dev/null | sed 's/^/    /' >&2 || true
    if pid=$(daemon_pid "$node"); then
        kill -9 "$pid" 2>/dev/null || true
        echo "$PROG: $node: killed the unresponsive daemon (pid $pid)" >&2
    elif alive "$launcher"; then
        kill -9 "$launcher" 2>/dev/null || true
    fi
    rm -f -- "$(pid_path "$node")"
    return 1
}

# stop_pids SIGNAL TIMEOUT PID...: signal the pids and wait until they are gone.
# Prints the pids still alive at the deadline.
stop_pids() {
    local sig=$1 timeout=$2 p
    shift 2
    (($#)) || return 0
    kill "-$sig" "$@" 2>/dev/null || true
    local deadline=$(($(now_ms) + timeout * 1000)) left
    while :; do
        left=()
        for p in "$@"; do alive "$p" && left+=("$p"); done
        ((${#left[@]})) || return 0
        (($(now_ms) < deadline)) || break
        sleep 0.1
        set -- "${left[@]}"
    done
    echo "${left[@]}"
}

# ---------------------------------------------------------------- commands

# The data-plane mode of this lab's daemons (what 'up' chose; xdp before that).
lab_mode() {
    cat -- "$RUN_DIR/$MODE_FILE" 2>/dev/null || echo xdp
}

cmd_up() {
    local usage="usage: scripts/lab.sh up N [--dataplane xdp|iptables]"
    (($# == 1 || $# == 3)) || usage_error "$usage"
    [[ $1 =~ ^[1-9][0-9]*$ ]] || usage_error "up: N must be a positive integer, got '$1'"
    local n=$1 mode=""
    if (($# == 3)); then
        [[ $2 == --dataplane ]] || usage_error "$usage"
        [[ $3 == xdp || $3 == iptables ]] || usage_error "up: --dataplane is xdp or iptables, got '$3'"
        mode=$3
    fi
    ((n <= MAX_NODES)) || usage_error "up: at most $MAX_NODES nodes"
    resolve_swarm_bin
    take_lock
    mkdir -p -- "$RUN_DIR" "$DATA_DIR" "$LOG_DIR"
    if [[ -n $mode ]]; then
        if [[ -e $RUN_DIR/$MODE_FILE && $(lab_mode) != "$mode" ]] && list_nodes | grep -q .; then
            die "the lab runs in $(lab_mode) mode; run 'scripts/lab.sh down' before switching to $mode"
        fi
        echo "$mode" >"$RUN_DIR/$MODE_FILE"
    fi

    ensure_bridge
    ensure_iptables
    ensure_ns "$CLIENT_NS"
    ensure_veth "$CLIENT_NS" "$CLIENT_NS" "$CLIENT_ADDR"

    local i node ns pid
    local -A launcher=()
    for ((i = 1; i <= n; i++)); do
        node=n$i
        ns=$(node_ns "$node")
        ensure_ns "$ns"
        ensure_veth "$ns" "$ns" "$(node_addr "$i")/24"
        ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1 >/dev/null
        # Replies of mesh connections leave through the task gateway while
        # their addresses live on the overlay: strict reverse-path
        # filtering would drop them.
        ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 >/dev/null
        if [[ $(lab_mode) == xdp ]]; then
            # On veth the kernel takes XDP_TX frames only when the peer runs
            # an XDP program: give each node's host end a pass program.
            "$SWARM_BIN" mesh attach-peer-pass --iface "$ns" --pin-dir "$BPF_DIR/peers" >/dev/null
        fi
    done
    # A real client sends full checksums; a veth leaves them to an offload
    # that never happens once XDP forwards the packet.
    ip netns exec "$CLIENT_NS" ethtool -K eth0 tx off >/dev/null 2>&1 || warn "ethtool not found; XDP-forwarded packets from the client may carry bad checksums"
    for ((i = 1; i <= n; i++)); do
        node=n$i
        if pid=$(daemon_pid "$node"); then
            continue
        fi
        if [[ -d $DATA_DIR/$node ]]; then
            info "$node: starting stopped daemon on its existing data dir"
        else
            info "$node: starting daemon"
        fi
        launcher[$node]=$(launch_daemon "$node")
    done
    local deadline=$(($(now_ms) + START_TIMEOUT * 1000)) failed=0
    for ((i = 1; i <= n; i++)); do
        node=n$i
        [[ -n ${launcher[$node]:-} ]] || continue
        wait_daemon "$node" "${launcher[$node]}" "$deadline" || failed=1
    done
    echo
    print_status
    ((failed == 0)) || die "some daemons failed to start"
}

cmd_start() {
    (($# == 1)) || usage_error "usage: scripts/lab.sh start n<i>"
    require_node "$1"
    resolve_swarm_bin
    take_lock
    local node=$1 pid launcher
    if pid=$(daemon_pid "$node"); then
        info "$node: daemon already running (pid $pid)"
        return 0
    fi
    launcher=$(launch_daemon "$node")
    wait_daemon "$node" "$launcher" $(($(now_ms) + START_TIMEOUT * 1000)) || exit 1
}

cmd_kill() {
    (($# == 1)) || usage_error "usage: scripts/lab.sh kill n<i>"
    check_node_name "$1"
    local node=$1 pid
    if ! ns_exists "$(node_ns "$node")" && [[ ! -e $(pid_path "$node") ]]; then
        die "no such node: $node"
    fi
    take_lock
    if ! pid=$(daemon_pid "$node"); then
        info "$node: daemon is not running; nothing to kill"
        return 0
    fi
    local left
    left=$(stop_pids KILL 5 "$pid")
    [[ -z $left ]] || die "$node: daemon (pid $pid) still alive after SIGKILL"
    info "$node: killed daemon (pid $pid) with SIGKILL"
}

cmd_cut() {
    (($# == 1)) || usage_error "usage: scripts/lab.sh cut NODE"
    local t ns host_if
    t=$(require_target "$1")
    read -r ns host_if <<<"$t"
    link_exists "$host_if" || die "$1: link $host_if does not exist; run: scripts/lab.sh up N"
    take_lock
    if ! host_link_up "$host_if"; then
        info "$1: link already cut"
        return 0
    fi
    ip link set "$host_if" down
    info "$1: link cut ($host_if down)"
}

cmd_heal() {
    (($# == 1)) || usage_error "usage: scripts/lab.sh heal NODE"
    local t ns host_if
    t=$(require_target "$1")
    read -r ns host_if <<<"$t"
    link_exists "$host_if" || die "$1: link $host_if does not exist; run: scripts/lab.sh up N"
    take_lock
    ip link set "$host_if" master "$BRIDGE"
    ip link set "$host_if" up
    ip -n "$ns" link set eth0 up
    # Wait until both ends have carrier and the bridge port forwards (state 3).
    local deadline=$(($(now_ms) + 10000))
    until [[ $(link_state "$host_if" "$ns") == up &&
        $(cat "/sys/class/net/$host_if/brport/state" 2>/dev/null) == 3 ]]; do
        (($(now_ms) < deadline)) || die "$1: link did not come up within 10s"
        sleep 0.1
    done
    info "$1: link healed ($host_if up)"
}

cmd_exec() {
    (($# >= 2)) || usage_error "usage: scripts/lab.sh exec NODE CMD..."
    local target=$1 t ns host_if
    shift
    t=$(require_target "$target")
    read -r ns host_if <<<"$t"
    if ! type -P -- "$1" >/dev/null; then
        echo "$PROG: exec: command not found: $1" >&2
        exit 127
    fi
    if [[ $target == client ]]; then
        exec env -u SWARM_HOST ip netns exec "$ns" "$@"
    fi
    exec env "SWARM_HOST=unix://$(sock_path "$target")" ip netns exec "$ns" "$@"
}

cmd_logs() {
    local follow=0 lines=100
    while (($#)); do
        case $1 in
            -f | --follow) follow=1; shift ;;
            -n | --lines)
                (($# >= 2)) || usage_error "logs: $1 needs a number"
                [[ $2 =~ ^[0-9]+$ ]] || usage_error "logs: $1 needs a number, got '$2'"
                lines=$2; shift 2 ;;
            -*) usage_error "logs: unknown option '$1'" ;;
            *) break ;;
        esac
    done
    (($# == 1)) || usage_error "usage: scripts/lab.sh logs [-f] [-n LINES] n<i>"
    check_node_name "$1"
    local log
    log=$(log_path "$1")
    [[ -e $log ]] || die "no log for $1 ($log does not exist)"
    if ((follow)); then
        exec tail -n "$lines" -F -- "$log"
    fi
    tail -n "$lines" -- "$log"
}

cmd_status() {
    (($# == 0)) || usage_error "usage: scripts/lab.sh status"
    print_status
}

print_status() {
    local fmt='%-7s %-6s %-14s %-5s %-16s %s\n'
    # shellcheck disable=SC2059
    printf "$fmt" NODE NETNS ADDRESS LINK DAEMON SOCKET
    local i node ns has_ns addr link daemon sock pid any=0
    while read -r i; do
        [[ -n $i ]] || continue
        any=1
        node=n$i
        ns=$(node_ns "$node")
        has_ns=no addr=- link=down
        if ns_exists "$ns"; then
            has_ns=yes
            addr=$(ns_address "$ns")
            addr=${addr:--}
            link=$(link_state "$ns" "$ns")
        fi
        if pid=$(daemon_pid "$node"); then daemon="running($pid)"; else daemon=stopped; fi
        sock=$(sock_path "$node")
        if [[ -S $sock ]]; then
            [[ $daemon == stopped ]] && sock="$sock(stale)"
        else
            sock=-
        fi
        # shellcheck disable=SC2059
        printf "$fmt" "$node" "$has_ns" "$addr" "$link" "$daemon" "$sock"
    done < <(list_nodes)
    if ns_exists "$CLIENT_NS"; then
        any=1
        addr=$(ns_address "$CLIENT_NS")
        # shellcheck disable=SC2059
        printf "$fmt" client yes "${addr:--}" "$(link_state "$CLIENT_NS" "$CLIENT_NS")" - -
    fi
    if ((any == 0)); then
        echo "(no lab; run: scripts/lab.sh up N)"
        return 0
    fi
    echo
    if link_exists "$BRIDGE"; then
        echo "bridge:    $BRIDGE $(ip -4 -o addr show dev "$BRIDGE" | awk '{print $4; exit}') $(host_link_up "$BRIDGE" && echo up || echo down)"
    else
        echo "bridge:    $BRIDGE missing"
    fi
    echo "netfilter: $(iptables_state)"
}

cmd_down() {
    (($# == 0)) || usage_error "usage: scripts/lab.sh down"
    take_lock
    local i node pid left f ns
    local pids=()

    # 1. Daemons: SIGTERM, then SIGKILL after the deadline.
    while read -r i; do
        [[ -n $i ]] || continue
        if pid=$(daemon_pid "n$i"); then pids+=("$pid"); fi
    done < <(list_nodes)
    if ((${#pids[@]})); then
        info "stopping ${#pids[@]} daemon(s): ${pids[*]}"
        left=$(stop_pids TERM "$STOP_TIMEOUT" "${pids[@]}")
        if [[ -n $left ]]; then
            warn "daemon(s) still alive after ${STOP_TIMEOUT}s, sending SIGKILL: $left"
            # shellcheck disable=SC2086
            left=$(stop_pids KILL 5 $left)
            [[ -z $left ]] || warn "could not kill: $left"
        fi
    fi

    # 2. Docker objects that lab nodes created (label swarm.data-dir under DATA_DIR).
    remove_docker_objects

    # 3. Anything else still running in a lab namespace (e.g. 'exec' leftovers).
    local lab_ns=()
    for f in "$NETNS_DIR"/swl-n* "$NETNS_DIR/$CLIENT_NS"; do
        [[ -e $f && ${f##*/} =~ ^swl-(n[1-9][0-9]*|client)$ ]] && lab_ns+=("${f##*/}")
    done
    pids=()
    for ns in "${lab_ns[@]}"; do
        while read -r pid; do [[ -n $pid ]] && pids+=("$pid"); done < <(ip netns pids "$ns" 2>/dev/null || true)
    done
    if ((${#pids[@]})); then
        info "stopping ${#pids[@]} leftover process(es) in lab namespaces: ${pids[*]}"
        left=$(stop_pids TERM 5 "${pids[@]}")
        # shellcheck disable=SC2086
        [[ -z $left ]] || left=$(stop_pids KILL 5 $left)
        [[ -z $left ]] || warn "could not kill: $left"
    fi

    # 4. Namespaces, veths, bridge.
    for ns in "${lab_ns[@]}"; do
        ip netns del "$ns" 2>/dev/null || warn "could not delete netns $ns"
    done
    for f in /sys/class/net/swl-n* "/sys/class/net/$CLIENT_NS"; do
        [[ -e $f && ${f##*/} =~ ^swl-(n[1-9][0-9]*|client)$ ]] || continue
        ip link del "${f##*/}" 2>/dev/null || true
    done
    if link_exists "$BRIDGE"; then
        ip link del "$BRIDGE" || warn "could not delete $BRIDGE"
    fi

    # 5. iptables rules (reads markers in RUN_DIR, so before removing it).
    remove_iptables
    # Pinned BPF maps and links of the lab's daemons (the programs went with
    # the namespaces' devices).
    if [[ -e $BPF_DIR ]]; then rm -rf -- "$BPF_DIR"; fi

    # 6. State directories (unmount anything below them first; never cross mounts).
    local d m
    for d in "$RUN_DIR" "$DATA_DIR"; do
        [[ -e $d ]] || continue
        while read -r m; do
            [[ -n $m ]] && { umount -l -- "$m" 2>/dev/null || warn "could not unmount $m"; }
        done < <(awk -v d="$d" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
        rm -rf --one-file-system -- "$d"
    done
    info "lab is down (logs kept in $LOG_DIR)"
}

remove_docker_objects() {
    command -v docker >/dev/null 2>&1 || return 0
    if ! timeout 20 docker info >/dev/null 2>&1; then
        warn "docker is not reachable; not removing containers created by lab nodes"
        return 0
    fi
    local ids=() id
    # Containers: label swarm.data-dir starts with DATA_DIR/.
    while read -r id; do [[ -n $id ]] && ids+=("$id"); done < <(
        timeout 60 docker ps -a --filter label=swarm.data-dir \
            --format '{{.ID}} {{.Label "swarm.data-dir"}}' |
            awk -v p="$DATA_DIR/" '{ v = substr($0, index($0, " ") + 1) } index(v, p) == 1 { print $1 }'
    )
    if ((${#ids[@]})); then
        info "removing ${#ids[@]} container(s) created by lab nodes"
        timeout 120 docker rm -f "${ids[@]}" >/dev/null || warn "docker rm -f failed for some containers"
    fi
    # Networks with the same label, if any (best effort).
    ids=()
    while read -r id; do [[ -n $id ]] && ids+=("$id"); done < <(
        timeout 60 docker network ls --filter label=swarm.data-dir \
            --format '{{.ID}} {{.Label "swarm.data-dir"}}' 2>/dev/null |
            awk -v p="$DATA_DIR/" '{ v = substr($0, index($0, " ") + 1) } index(v, p) == 1 { print $1 }'
    )
    if ((${#ids[@]})); then
        info "removing ${#ids[@]} network(s) created by lab nodes"
        timeout 60 docker network rm "${ids[@]}" >/dev/null || warn "docker network rm failed for some networks"
    fi
}

# ---------------------------------------------------------------- main

main() {
    local cmd=${1:-}
    case $cmd in
        help | -h | --help) usage; return 0 ;;
        "") usage >&2; return 2 ;;
        up | down | status | exec | kill | start | cut | heal | logs) ;;
        *) usage_error "unknown command '$cmd'" ;;
    esac
    shift
    require_root "$cmd" "$@"
    require_tools
    "cmd_$cmd" "$@"
}

main "$@"
