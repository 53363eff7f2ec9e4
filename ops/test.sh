#!/usr/bin/env bash
# The one test command: formatting, lints, and the whole test suite against
# real services. Usage: ops/test.sh [extra `cargo test` args]
#
# Services it makes sure of:
#   Postgres  DATABASE_URL if set, else the local server on 127.0.0.1:5432
#             (database `test`), else a throwaway cluster made with initdb.
#   Kafka     KAFKA_BOOTSTRAP if set, else a tansu broker (installed by
#             ops/install-tansu.sh) started on a free loopback port.
#   Clients   Python confluent-kafka (PyPI), psql, curl and the graphql-ws npm
#             package (ops/e2e/graphql) for the end-to-end tests.
# Under CI=true a service that can't be had is a failure, never a skip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conductor-target}"
export CONDUCTOR_TOOLS="${CONDUCTOR_TOOLS:-$HOME/.cache/conductor-tools}"
SCRATCH="$(mktemp -d -t conductor-test.XXXXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true; done
    if [[ -n "${PG_SCRATCH:-}" ]]; then pg_ctl -D "$PG_SCRATCH" stop -m immediate >/dev/null 2>&1 || true; fi
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

step() { printf '\n== %s ==\n' "$*"; }
fail() { echo "error: $*" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
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
    initdb="$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -n1 || true)"
    if [[ -n "$initdb" ]]; then
        local bin port
        bin="$(dirname "$initdb")"; port="$(free_port)"
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
        fail "no Postgres: set DATABASE_URL, run a server on 127.0.0.1:5432, or install initdb (apt-get install postgresql)"
    fi
    echo "WARNING: no Postgres reachable; tests that need it will fail or report it" >&2
}

ensure_kafka() {
    if [[ -n "${KAFKA_BOOTSTRAP:-}" ]]; then
        echo "Kafka: KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP"
        return
    fi
    ops/install-tansu.sh
    local port pid
    port="$(free_port)"
    pid="$(ops/start-tansu.sh "$SCRATCH/tansu" "$port")"
    PIDS+=("$pid")
    export KAFKA_BOOTSTRAP="127.0.0.1:$port"
    echo "Kafka: tansu (pid $pid) on $KAFKA_BOOTSTRAP"
}

ensure_python_client() {
    # The end-to-end tests drive the broker with a client nobody on the team wrote.
    if python3 -c "import confluent_kafka" 2>/dev/null; then
        echo "Python confluent-kafka: installed"
        return
    fi
    python3 -m pip install --quiet --disable-pip-version-check "confluent-kafka==2.16.1" \
        || fail "could not install the Python confluent-kafka client from PyPI"
    echo "Python confluent-kafka: installed now"
}

ensure_curl() {
    # The SSE end-to-end test follows a stream with curl.
    if command -v curl >/dev/null; then
        echo "curl: installed"
        return
    fi
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        (apt-get update -qq && apt-get install -y -qq curl >/dev/null) || fail "could not install curl with apt-get"
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

step "services"
ensure_postgres
ensure_kafka
ensure_python_client
ensure_curl
ensure_node_client

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test"
cargo test --workspace "$@" 2>&1 | tee "$SCRATCH/cargo-test.log"
# One closing line for the whole suite (cargo's last line is a doc-test binary's).
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, i }' \
    "$SCRATCH/cargo-test.log"
