#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder that reads outside input
# (libFuzzer through cargo-fuzz, targets in fuzz/fuzz_targets/). Not part of
# ops/test.sh: a short run is a minute per target, a real one ten or more.
#
# Usage: ops/fuzz.sh [--seconds N] [--jobs J] [--seeds] [--check] [--light] [TARGET...]
#   --seconds N  how long each target runs (default $FUZZ_SECONDS or 60)
#   --jobs J     targets fuzzed at once (default 1; each uses one core)
#   --seeds      rewrite the seed files (fuzz/corpus/*/seed-*) from the test
#                data first (engine/examples/write_fuzz_seeds.rs)
#   --check      no fuzzing: run every target once over its corpus and the
#                crashes kept in fuzz/artifacts (a regression check)
#   --light      leave out the targets that need the server and processor
#                crates (jwt, subscribe_message, topology): a build of
#                minutes instead of half an hour
#   TARGET...    only these targets (default: all, see `cargo fuzz list`)
#
# Sanitizer: none. The decoders are safe Rust (no `unsafe` on these paths),
# so AddressSanitizer would find nothing the bounds checks don't, at half the
# speed; the build keeps debug assertions and overflow checks on, so an
# arithmetic overflow on a length field is a crash like a panic is.
#
# What a run keeps, in the repository: the corpus each target grew
# (fuzz/corpus/TARGET, minimised with `cargo fuzz cmin` after the run) and
# any input that crashed a target (fuzz/artifacts/TARGET/crash-*). A crash
# found is fixed with a regression test in the crate that owns the decoder.
#
# Needs the nightly toolchain (rustup toolchain install nightly); cargo-fuzz
# is installed into $CONDUCTOR_TOOLS/cargo-fuzz from crates.io.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
export CONDUCTOR_TOOLS="${CONDUCTOR_TOOLS:-$HOME/.cache/conductor-tools}"
FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/conductor-fuzz-target}"
CARGO_FUZZ_VERSION=0.13.2
SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
JOBS=1
SEEDS=""
CHECK=""
LIGHT=""
# The targets of the `servers` feature (fuzz/Cargo.toml).
SERVER_TARGETS=(jwt subscribe_message topology)
TARGETS=()

fail() { echo "error: $*" >&2; exit 1; }
usage() { sed -n '6,16p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds) [[ "${2:-}" =~ ^[0-9]+$ ]] || fail "--seconds takes a whole number of seconds, e.g. --seconds 600"
            SECONDS_PER_TARGET="$2"; shift 2 ;;
        --jobs) [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || fail "--jobs takes a number of targets to run at once, e.g. --jobs 2"
            JOBS="$2"; shift 2 ;;
        --seeds) SEEDS=1; shift ;;
        --check) CHECK=1; shift ;;
        --light) LIGHT=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) fail "unknown option $1 (see ops/fuzz.sh --help)" ;;
        *) TARGETS+=("$1"); shift ;;
    esac
done

rustup toolchain list 2>/dev/null | grep -q '^nightly' \
    || fail "cargo-fuzz needs the nightly toolchain: rustup toolchain install nightly"

CARGO_FUZZ="$CONDUCTOR_TOOLS/cargo-fuzz/bin/cargo-fuzz"
if [[ ! -x "$CARGO_FUZZ" ]] || ! "$CARGO_FUZZ" --version | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION into $CONDUCTOR_TOOLS/cargo-fuzz"
    cargo +nightly install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked \
        --root "$CONDUCTOR_TOOLS/cargo-fuzz" || fail "cargo install cargo-fuzz failed"
fi
export PATH="$CONDUCTOR_TOOLS/cargo-fuzz/bin:$PATH"
fuzz() { (cd "$ROOT/fuzz" && cargo +nightly fuzz "$@"); }

ALL=()
while IFS= read -r t; do
    if [[ -n "$LIGHT" ]] && printf '%s\n' "${SERVER_TARGETS[@]}" | grep -qx "$t"; then continue; fi
    ALL+=("$t")
done < <(fuzz list)
[[ ${#ALL[@]} -gt 0 ]] || fail "cargo fuzz list found no targets in fuzz/"
FEATURES=(--features servers)
[[ -z "$LIGHT" ]] || FEATURES=()
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=("${ALL[@]}")
for t in "${TARGETS[@]}"; do
    printf '%s\n' "${ALL[@]}" | grep -qx "$t" || fail "no fuzz target $t here (targets: ${ALL[*]}${LIGHT:+; --light leaves out ${SERVER_TARGETS[*]}})"
done

if [[ -n "$SEEDS" ]]; then
    echo "writing seed corpora from the test data"
    cargo run --quiet -p conductor-engine --example write_fuzz_seeds -- "$ROOT/fuzz/corpus"
fi

echo "building ${#TARGETS[@]} targets (nightly, sanitizer none, debug assertions on)"
fuzz build --sanitizer none --debug-assertions "${FEATURES[@]}" --target-dir "$FUZZ_TARGET_DIR" >/dev/null \
    || fail "cargo fuzz build failed (run it by hand in fuzz/ to see why)"
BIN_DIR="$(ls -d "$FUZZ_TARGET_DIR"/*/release | head -n1)"

# Each target's libFuzzer log and summary line, kept after the run.
REPORTS="$ROOT/target/fuzz-reports"
rm -rf "$REPORTS"
mkdir -p "$REPORTS"

# One target: fuzz (or check) it, then say what it did in REPORTS/TARGET.
run_target() {
    local t="$1" corpus="$ROOT/fuzz/corpus/$1" artifacts="$ROOT/fuzz/artifacts/$1"
    mkdir -p "$corpus" "$artifacts"
    local log="$REPORTS/$t.log" status=ok
    if [[ -n "$CHECK" ]]; then
        # The corpus as a directory, the kept crashes as single inputs.
        "$BIN_DIR/$t" -runs=0 "$corpus" >"$log" 2>&1 || status=CRASH
        if compgen -G "$artifacts/*" >/dev/null; then
            "$BIN_DIR/$t" "$artifacts"/* >>"$log" 2>&1 || status=CRASH
        fi
        printf '%s\t%s\t%s\n' "$t" "$(find "$corpus" -type f | wc -l)" "$status" >"$REPORTS/$t"
        return 0
    fi
    # -max_len: events and segments bigger than 64 KiB add nothing a 64 KiB
    # one doesn't; -timeout: an input taking 10 s is a hang worth keeping.
    "$BIN_DIR/$t" "$corpus" -artifact_prefix="$artifacts/" -max_total_time="$SECONDS_PER_TARGET" \
        -max_len=65536 -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1 || status=CRASH
    local execs per_s
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
    per_s="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)"
    # Keep the corpus small: only inputs that add coverage stay (not after
    # a crash: the merge would run into it again and keep a copy each time).
    [[ "$status" == ok ]] && fuzz cmin --sanitizer none --debug-assertions "${FEATURES[@]}" --target-dir "$FUZZ_TARGET_DIR" \
        "$t" >>"$log" 2>&1 || true
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$SECONDS_PER_TARGET" "${execs:-?}" "${per_s:-?}" \
        "$(find "$corpus" -type f | wc -l)" "$status" >"$REPORTS/$t"
}

running=0
for t in "${TARGETS[@]}"; do
    echo "  $t"
    run_target "$t" &
    running=$((running + 1))
    if [[ $running -ge $JOBS ]]; then wait -n || true; running=$((running - 1)); fi
done
wait

echo
crashed=0
if [[ -n "$CHECK" ]]; then
    printf '%-20s %8s  %s\n' target inputs result
    for t in "${TARGETS[@]}"; do
        IFS=$'\t' read -r name inputs status <"$REPORTS/$t"
        printf '%-20s %8s  %s\n' "$name" "$inputs" "$status"
        [[ "$status" == ok ]] || { crashed=1; tail -n 30 "$REPORTS/$t.log" >&2; }
    done
else
    printf '%-20s %8s %12s %8s %8s  %s\n' target seconds executions exec/s corpus result
    for t in "${TARGETS[@]}"; do
        IFS=$'\t' read -r name secs execs per_s corpus status <"$REPORTS/$t"
        printf '%-20s %8s %12s %8s %8s  %s\n' "$name" "$secs" "$execs" "$per_s" "$corpus" "$status"
        if [[ "$status" != ok ]]; then
            crashed=1
            echo "--- $name: the crash (kept in fuzz/artifacts/$name) ---" >&2
            grep -A 25 -m1 -E "panicked|ERROR: libFuzzer|deadly signal" "$REPORTS/$t.log" >&2 || tail -n 30 "$REPORTS/$t.log" >&2
        fi
    done
fi
echo "libFuzzer logs: $REPORTS/TARGET.log"
[[ $crashed == 0 ]] || fail "a target crashed: reproduce with $BIN_DIR/TARGET fuzz/artifacts/TARGET/crash-…"
