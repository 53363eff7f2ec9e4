#!/usr/bin/env bash
# Starts a throwaway tansu broker on loopback for tests.
#
# Usage: ops/start-tansu.sh DIR PORT
#   DIR   storage directory (created; the SQLite database and tansu.log live there)
#   PORT  TCP port on 127.0.0.1
# Prints the broker's pid on stdout once the port accepts connections;
# stop it with `kill PID`. The bootstrap address is 127.0.0.1:PORT.
# CONDUCTOR_TOOLS (default $HOME/.cache/conductor-tools) locates bin/tansu.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 DIR PORT" >&2
    exit 2
fi
DIR="$1"
PORT="$2"
TOOLS="${CONDUCTOR_TOOLS:-$HOME/.cache/conductor-tools}"
BIN="$TOOLS/bin/tansu"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ ! -x "$BIN" ]]; then
    echo "error: tansu not found at $BIN; install with $HERE/install-tansu.sh" >&2
    exit 1
fi
if ! [[ "$PORT" =~ ^[0-9]+$ ]]; then
    echo "error: PORT must be a number, got '$PORT'" >&2
    exit 2
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "error: something already listens on 127.0.0.1:$PORT" >&2
    exit 1
fi

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
LOG="$DIR/tansu.log"

# tansu resolves the sqlite URL relative to its working directory.
(
    cd "$DIR"
    exec "$BIN" broker \
        --cluster-id conductor-test \
        --listener-url "tcp://127.0.0.1:$PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$PORT" \
        --storage-engine "sqlite://tansu.db" \
        </dev/null >>"$LOG" 2>&1
) &
PID=$!

# tansu 0.6's SQLite schema has no index on `header`, and a fetch looks up
# each record's headers by (topition, offset_id): every record read scans
# every header ever written, so reads slow down quadratically (5,000 records
# with 4 headers each: 7.8 s to consume; 20,000: minutes, and fetches time
# out). The index below, on the table tansu created at startup, makes that
# lookup a seek (20,000 records: 1.5 s).
index_headers() {
    python3 - "$DIR/tansu.db" <<'PY' || { echo "error: could not index tansu's header table" >&2; kill "$PID"; exit 1; }
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30)
for _ in range(100):
    if db.execute("select 1 from sqlite_master where type = 'table' and name = 'header'").fetchone():
        break
    time.sleep(0.1)
db.execute("create index if not exists conductor_header_by_record on header (topition, offset_id)")
db.commit()
PY
}

for _ in $(seq 1 100); do
    if ! kill -0 "$PID" 2>/dev/null; then
        echo "error: tansu exited during startup; last lines of $LOG:" >&2
        tail -n 20 "$LOG" >&2
        exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        index_headers
        echo "$PID"
        exit 0
    fi
    sleep 0.1
done

echo "error: tansu did not accept connections on 127.0.0.1:$PORT within 10 s (log: $LOG)" >&2
kill "$PID" 2>/dev/null || true
exit 1
