#!/usr/bin/env bash
# The fault soak: ops/tests/faults_soak.rs for FAULT_SOAK_MINUTES (30 by
# default). Round after round `conductor run` folds the entities topology
# while faults drawn at random hit it: the process SIGKILLed, Postgres
# connections cut, Postgres restarted (fast, immediate) or down 5–30 s, the
# Kafka broker stopped (TERM, KILL) for 2–10 s, the file log's fsync failing
# (libfiu), Neo4j SIGKILLed under the graph sink. Lanes: Kafka → Postgres in
# transactions and progress mode, file log → Postgres under fiu-run, and the
# entity graph into SQLite and Neo4j. Every round must end as a straight run
# of the same acknowledged input (the Neo4j lane: Neo4j equal to the SQL
# graph tables): nothing lost, nothing doubled, nothing stalled.
#
#   soak/faults.sh                               # 30 minutes, release build
#   FAULT_SOAK_MINUTES=5 FAULT_SOAK_PROFILE=debug soak/faults.sh
#   FAULT_SOAK_SEED=42 FAULT_SOAK_LANES=file soak/faults.sh   # one schedule again
#
# Starts its own Postgres cluster (Debian's postgresql binaries) and its own
# Apache Kafka and Neo4j (ops/start-kafka.sh, ops/start-neo4j.sh), which it
# restarts and kills; needs Java and fiu-utils (ops/test.sh installs both as
# root). The report (faults per kind, recoveries, time to recover p50/p99,
# lost, duplicated) is printed and written to target/soak-reports/faults.json;
# the log to faults.log beside it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export FAULT_SOAK_MINUTES="${FAULT_SOAK_MINUTES:-30}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conductor-target}"
profile=(--release)
case "${FAULT_SOAK_PROFILE:-release}" in
    release) ;;
    debug) profile=() ;;
    *) echo "error: FAULT_SOAK_PROFILE must be release or debug, got '$FAULT_SOAK_PROFILE'" >&2; exit 2 ;;
esac
for tool in fiu-run fiu-ctrl java; do
    command -v "$tool" >/dev/null || {
        echo "error: $tool is not installed (ops/test.sh installs it as root: fiu-utils, Java 17)" >&2
        exit 1
    }
done
export CI=true # a missing service fails the soak instead of skipping it
reports="target/soak-reports"
mkdir -p "$reports"
export FAULT_SOAK_REPORT="$PWD/$reports/faults.json"
rm -f "$FAULT_SOAK_REPORT"
echo "fault soak: $FAULT_SOAK_MINUTES minutes; report: $FAULT_SOAK_REPORT"
started=$SECONDS
cargo test "${profile[@]}" -p conductor --test faults_soak -- --ignored --nocapture 2>&1 | tee "$reports/faults.log"
status=${PIPESTATUS[0]}
echo "fault soak ended in $((SECONDS - started)) s (exit $status); log: $reports/faults.log"
exit "$status"
