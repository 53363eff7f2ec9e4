#!/usr/bin/env bash
# Starts a throwaway Neo4j 5 (community, embedded database with the Bolt
# connector) on loopback, with auth, for the tests and for trying the graph
# projection by hand.
#
# Usage: ops/start-neo4j.sh [DIR [PORT]]
#   DIR   data directory (created; default: a new temporary one). The
#         server's log is DIR/neo4j.log.
#   PORT  Bolt port on 127.0.0.1 (default: a free one).
# Once Bolt accepts logins, prints on stdout (shell assignments, so
# `eval "$(ops/start-neo4j.sh)"` works):
#   NEO4J_URI=bolt://127.0.0.1:PORT
#   NEO4J_USER=neo4j
#   NEO4J_PASSWORD=...      ($NEO4J_PASSWORD if set, else conductor-test)
#   NEO4J_PID=PID
# (Check the script's exit status: `env="$(ops/start-neo4j.sh)" && eval "$env"`.)
# Its pid is also in DIR/pid as soon as it starts.
# Stop it with `kill $NEO4J_PID`. Installs Neo4j first if needed
# (ops/install-neo4j.sh). NEO4J_HEAP (default 512m) sets the JVM heap.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/services.sh"

[[ $# -le 2 ]] || { echo "usage: $0 [DIR [PORT]]" >&2; exit 2; }
DIR="${1:-$(mktemp -d -t conductor-neo4j.XXXXXX)}"
PORT="${2:-$(free_port)}"
[[ "$PORT" =~ ^[0-9]+$ ]] || { echo "error: PORT must be a number, got '$PORT'" >&2; exit 2; }
port_open "$PORT" && die "something already listens on 127.0.0.1:$PORT"
PASSWORD="${NEO4J_PASSWORD:-conductor-test}"
# Neo4j refuses passwords shorter than 8 characters.
[[ ${#PASSWORD} -ge 8 ]] || die "NEO4J_PASSWORD must have at least 8 characters"

JAVA="$(java_bin)"
INSTALL="$("$HERE/install-neo4j.sh")"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
LOG="$DIR/neo4j.log"
# Readiness is read from this run's log only.
[[ -f "$LOG" ]] && mv "$LOG" "$LOG.previous"

"$JAVA" -Xms128m "-Xmx${NEO4J_HEAP:-512m}" -XX:+UseG1GC -Djava.awt.headless=true \
    -cp "$INSTALL/classes:$(cat "$INSTALL/classpath")" \
    ConductorNeo4j "$DIR/home" "$PORT" "$PASSWORD" </dev/null >>"$LOG" 2>&1 &
PID=$!
echo "$PID" >"$DIR/pid"

# The launcher prints "ready" after the password is set, i.e. once logins work.
ready() { grep -q "^ready bolt://" "$LOG" && port_open "$PORT"; }
wait_until 120 "$PID" "$LOG" ready || die "Neo4j did not start (dir $DIR)"
echo "NEO4J_URI=bolt://127.0.0.1:$PORT"
echo "NEO4J_USER=neo4j"
echo "NEO4J_PASSWORD=$PASSWORD"
echo "NEO4J_PID=$PID"
