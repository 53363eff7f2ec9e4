#!/usr/bin/env bash
# The long crash soak: the exactly-once crash tests of ops/tests/runtime_crash.rs
# at soak size. `conductor run` folds CRASH_EVENTS events (1,000,000 by
# default) and is SIGKILLed CRASH_KILLS times (30 by default) at random
# points while folding; the final projection must equal a clean run's (blake3
# digest per table), every change must be on the changefeed exactly once and
# in per-key order, every bad record in the DLQ exactly once, and a full
# `conductor replay rebuild` must verify equal. On four pairs: file log +
# SQLite, file log + Postgres, Kafka + Postgres in progress mode and in
# transactions mode.
#
#   soak/crash.sh                      # all three, release build
#   CRASH_EVENTS=300000 soak/crash.sh kafka
#   CRASH_PROFILE=debug soak/crash.sh  # reuse the test suite's debug build
#
# The argument filters the tests by name (e.g. `kafka`, `postgres`). Needs
# Postgres (DATABASE_URL, else 127.0.0.1:5432/test); starts Apache Kafka
# (ops/start-kafka.sh) unless KAFKA_BOOTSTRAP is set (KAFKA_BROKER=tansu for
# tansu: then filter the transactions pair out, e.g. with the argument
# `kafka_and_postgres`). The log lands in target/soak-reports/crash.log.
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
kafka_pid=""
cleanup() {
    [[ -n "$kafka_pid" ]] && kill -9 "$kafka_pid" 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT

if [[ -z "${KAFKA_BOOTSTRAP:-}" ]]; then
    kafka_env="$(ops/start-kafka.sh "$scratch/kafka")" || { echo "error: could not start Apache Kafka" >&2; exit 1; }
    eval "$kafka_env"
    kafka_pid="$KAFKA_PID"
    export KAFKA_BOOTSTRAP KAFKA_BROKER=apache-kafka
fi

report="target/soak-reports/crash.log"
mkdir -p "$(dirname "$report")"
echo "crash soak: $CRASH_EVENTS events, $CRASH_KILLS kills per pair; Postgres $DATABASE_URL, Kafka $KAFKA_BOOTSTRAP"
started=$SECONDS
# One test at a time: each already keeps both cores busy.
cargo test "${profile[@]}" --workspace --test runtime_crash -- --test-threads 1 --nocapture $filter 2>&1 | tee "$report"
echo "crash soak passed in $((SECONDS - started)) s; log: $report" | tee -a "$report"
