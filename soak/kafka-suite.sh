#!/usr/bin/env bash
# The Kafka tests of the suite on a second broker: tansu by default (the
# Kafka-protocol broker without transactions that progress mode exists for),
# or any broker at KAFKA_BOOTSTRAP. ops/test.sh runs the same tests on
# Apache Kafka.
#
#   soak/kafka-suite.sh                         # tansu, installed and started here
#   KAFKA_BOOTSTRAP=host:port KAFKA_BROKER=redpanda soak/kafka-suite.sh
#
# On tansu (KAFKA_BROKER=tansu) the transactions-mode tests check that the
# broker's refusal is clear, and the transactions-mode crash test of
# `conductor run` is skipped (it needs transactions). Needs Postgres
# (DATABASE_URL, else 127.0.0.1:5432/test) for the `conductor run` tests.
# The log lands in target/soak-reports/kafka-suite.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conductor-target}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export CI=true # a missing service fails the run instead of skipping tests
scratch="$(mktemp -d -t conductor-kafka-suite.XXXXXX)"
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
    export KAFKA_BOOTSTRAP="127.0.0.1:$port" KAFKA_BROKER=tansu
fi
skip=()
[[ "${KAFKA_BROKER:-}" == tansu ]] && skip=(--skip kafka_transactions_and_postgres)

report="target/soak-reports/kafka-suite.log"
mkdir -p "$(dirname "$report")"
echo "Kafka suite on $KAFKA_BOOTSTRAP (KAFKA_BROKER=${KAFKA_BROKER:-unset}); Postgres $DATABASE_URL"
started=$SECONDS
{
    cargo test -p conductor-engine --test log_kafka --test kafka_exactly_once --test kafka_transactions
    cargo test -p conductor --test kafka_postgres_e2e
    cargo test -p conductor --test runtime_crash -- kafka "${skip[@]}"
} 2>&1 | tee "$report"
echo "Kafka suite passed on ${KAFKA_BROKER:-$KAFKA_BOOTSTRAP} in $((SECONDS - started)) s; log: $report" | tee -a "$report"
