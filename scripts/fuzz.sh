#!/usr/bin/env bash
# Fuzzes every target of fuzz/ with libFuzzer (cargo-fuzz, on the stable
# toolchain: no sanitizer, coverage instrumentation only), one target at a
# time. Each run starts from the committed corpus (fuzz/corpus/<target>/);
# inputs that reach new code are merged back into it, so commit them.
#
# Usage:
#   scripts/fuzz.sh [--seconds N | --runs N] [TARGET...]
#       fuzz each TARGET (default: all) for N seconds (default 60) or N
#       executions; prints one line per target with its execution count
#   scripts/fuzz.sh --replay TARGET FILE
#       run one input through a target (a crash artifact, or a corpus file
#       the corpus test named)
#   scripts/fuzz.sh --minimize [TARGET...]
#       shrink the committed corpus to what keeps its coverage
#   scripts/fuzz.sh --list
#
# Needs root: the packet targets load BPF programs. A crash ends a target's run
# with the failing input saved under fuzz/libfuzzer/artifacts/<target>/,
# and the run goes on with the next target; the exit status says if any did.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
export PATH="$HOME/.cargo/bin:$PATH"

FUZZ_DIR=fuzz/libfuzzer
CORPUS=fuzz/corpus
# The largest input: whole compose files and command sequences need room.
MAX_LEN=16384

all_targets() {
    sed -n 's/^name = "\(.*\)"$/\1/p' "$FUZZ_DIR/Cargo.toml" | grep -v '^swarm-fuzz-targets$'
}

ensure_cargo_fuzz() {
    have cargo-fuzz && return
    log "installing cargo-fuzz"
    cargo install --locked cargo-fuzz
}

# Built once by `cargo fuzz build` (our project, no sanitizer: stable
# Rust), then run directly, so that an edit during a long run rebuilds
# nothing underneath it.
build() { cargo fuzz build --fuzz-dir "$FUZZ_DIR" --sanitizer none; }
binary() { echo "$FUZZ_DIR/target/$(rustc -vV | sed -n 's/^host: //p')/release/$1"; }

mode=(-max_total_time=60)
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) mode=(-max_total_time="$2"); shift 2 ;;
        --runs) mode=(-runs="$2"); shift 2 ;;
        --list) all_targets; exit 0 ;;
        --minimize) minimize_only=1; shift ;;
        --replay)
            [ $# -eq 3 ] || die "usage: scripts/fuzz.sh --replay TARGET FILE"
            need_root "the packet targets load BPF programs"
            ensure_cargo_fuzz
            build
            "$(binary "$2")" "$3"
            exit ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(all_targets)
for t in "${targets[@]}"; do
    all_targets | grep -qx "$t" || die "no fuzz target $t (see --list)"
done

need_root "the packet targets load BPF programs"
ensure_cargo_fuzz
log "building the fuzz targets"
build

# Replace the committed corpus of $1 by the smallest set that reaches what
# it and the inputs in $2 reach; the hand-made seeds (seed-*) and the
# inputs that once failed (found-*) stay whatever their coverage.
minimal() {
    local min
    min=$(mktemp -d)
    # Edges only (no hit counts): enough to replay every branch the
    # fuzzer reached, at a tenth of the files.
    "$(binary "$1")" "$min" "$CORPUS/$1" ${2:+"$2"} -merge=1 -use_counters=0 -max_len=$MAX_LEN
    find "$CORPUS/$1" -maxdepth 1 \( -name 'seed-*' -o -name 'found-*' \) -exec cp {} "$min/" \;
    rm -rf "${CORPUS:?}/$1"
    mv "$min" "$CORPUS/$1"
}

failed=0
summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
if [ -n "${minimize_only:-}" ]; then
    for t in "${targets[@]}"; do
        minimal "$t" "" >/dev/null 2>&1
        log "$t: corpus $(find "$CORPUS/$t" -type f | wc -l) inputs"
    done
    exit 0
fi
for t in "${targets[@]}"; do
    found=$(mktemp -d)
    out="$found.log"
    log "fuzzing $t (${mode[*]})"
    start=$(now)
    # New inputs go to a scratch directory first; the committed corpus is
    # read as seeds. -merge then keeps only the ones that add coverage.
    mkdir -p "$FUZZ_DIR/artifacts/$t"
    if ! "$(binary "$t")" "$found" "$CORPUS/$t" "${mode[@]}" -max_len=$MAX_LEN \
        -artifact_prefix="$FUZZ_DIR/artifacts/$t/" -print_final_stats=1 >"$out" 2>&1; then
        grep -A4 'panicked at' "$out" | head -20 >&2
        printf '%-18s FAILED: the input is under %s/artifacts/%s/ (replay it with --replay)\n' \
            "$t" "$FUZZ_DIR" "$t" | tee -a "$summary"
        failed=1
        rm -rf "$found" "$out"
        continue
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)
    minimal "$t" "$found" >>"$out" 2>&1
    printf '%-18s %12s execs in %s, no crash; corpus %s inputs\n' \
        "$t" "${runs:-?}" "$(elapsed "$start")" "$(find "$CORPUS/$t" -type f | wc -l)" | tee -a "$summary"
    rm -rf "$found" "$out"
done
log "summary"
cat "$summary"
exit $failed
