#!/usr/bin/env bash
# Fold throughput of `conductor run --log kafka` into Postgres on Apache
# Kafka (progress and transactions mode) and on tansu (progress mode), next
# to the file log in the same run. Builds release binaries, starts both
# brokers on loopback (Apache Kafka from Maven Central, tansu from
# crates.io), runs `conductor-soak kafka-fold` with the arguments given, e.g.
#   soak/kafka-fold.sh --events 100000
# Needs Postgres (DATABASE_URL, else 127.0.0.1:5432/test). The report lands
# in target/soak-reports/kafka-fold.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conductor-target}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
scratch="$(mktemp -d -t conductor-kafka-fold.XXXXXX)"
pids=()
cleanup() {
    for pid in "${pids[@]:-}"; do [[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null || true; done
    rm -rf "$scratch"
}
trap cleanup EXIT

cargo build --release --quiet -p conductor -p conductor-soak
ops/install-tansu.sh >/dev/null
kafka_env="$(ops/start-kafka.sh "$scratch/kafka")" || { echo "error: could not start Apache Kafka" >&2; exit 1; }
eval "$kafka_env"
pids+=("$KAFKA_PID")
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
pids+=("$(ops/start-tansu.sh "$scratch/tansu" "$port")")
"$CARGO_TARGET_DIR/release/conductor-soak" kafka-fold \
    --kafka "apache-kafka,progress,$KAFKA_BOOTSTRAP" \
    --kafka "apache-kafka,transactions,$KAFKA_BOOTSTRAP" \
    --kafka "tansu,progress,127.0.0.1:$port" \
    "$@"
