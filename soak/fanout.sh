#!/usr/bin/env bash
# The subscription fan-out benchmark: N WebSocket subscribers (1k, 5k, 10k
# by default) on one `conductor serve` while events are appended at a fixed
# rate. Builds both binaries in release, raises the open-file limit (each
# subscriber is a socket in this process and one in the server), and runs
# `conductor-soak fanout` with the arguments given, e.g.
#   soak/fanout.sh --subscribers 1000,5000 --rate 200 --tenants 100 --seconds 20
# The report lands in target/soak-reports/fanout.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
want=65536
if [[ "$(ulimit -n)" != unlimited && "$(ulimit -n)" -lt "$want" ]]; then
    ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
echo "open-file limit: $(ulimit -n)"
cargo build --release --quiet -p conductor -p conductor-soak
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/conductor-soak" fanout "$@"
