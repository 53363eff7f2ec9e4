#!/usr/bin/env bash
# The long crash soak: the exactly-once crash tests of ops/tests/runtime_crash.rs
# at soak size. `conductor run` folds CRASH_EVENTS events (1,000,000 by
# default) and is SIGKILLed CRASH_KILLS times (30 by default) at random
# points while folding; the final projection must equal a clean run's (blake3
# digest per table), every change must be on the changefeed exactly once and
# in per-key order, every bad record in the DLQ exactly once, and a full
# `conductor replay rebuild` must verify equal. On three pairs: file log +
# SQLite, file log + Postgres, Kafka (tansu) + Postgres.
#
#   soak/crash.sh                      # all three, release build
#   CRASH_EVENTS=300000 soak/crash.sh kafka
#   CRASH_PROFILE=debug soak/crash.sh  # reuse the test suite's debug build
#
# The argument filters the tests by name (e.g. `kafka`, `postgres`). Needs
# Postgres (DATABASE_URL, else 127.0.0.1:5432/test); starts a tansu broker
# unless KAFKA_BOOTSTRAP is set. The log lands in target/soak-reports/crash.log.
# ops/test.sh runs the same tests at 100,000 events and 10 kills.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CRASH_EVENTS="${CRASH_EVENTS:-1000000}"
export CRASH_KILLS="${CRASH_KILLS:-30}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conductor-target}"
profile=(--release)
case "${CRASH_PROFILE:-release}" in
    release) ;;
    debug) profile=() ;;
    *) echo "error: CRASH_PROFILE must be release or debug, got '$CRASH_PROFILE'" >&2; exit 2 ;;
esac
export CI=true # a missing service fails the soak instead of skipping a pair
filter="${1:-}"
scratch="$(mktemp -d -t conductor-crash-soak.XXXXXX)"
tansu_pid=""
cleanup() {
    [[ -n "$tansu_pid" ]] && kill "$tansu_pid" 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT

if [[ -z "${KAFKA_BOOTSTRAP:-}" ]]; then
    ops/install-tansu.sh
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    tansu_pid="$(ops/start-tansu.sh "$scratch/tansu" "$port")"
    export KAFKA_BOOTSTRAP="127.0.0.1:$port"
fi

report="target/soak-reports/crash.log"
mkdir -p "$(dirname "$report")"
echo "crash soak: $CRASH_EVENTS events, $CRASH_KILLS kills per pair; Postgres $DATABASE_URL, Kafka $KAFKA_BOOTSTRAP"
started=$SECONDS
# One test at a time: each already keeps both cores busy.
cargo test "${profile[@]}" --workspace --test runtime_crash -- --test-threads 1 --nocapture $filter 2>&1 | tee "$report"
echo "crash soak passed in $((SECONDS - started)) s; log: $report" | tee -a "$report"
