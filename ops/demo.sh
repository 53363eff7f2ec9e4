#!/usr/bin/env bash
# The demo on the embedded defaults (file log under ./data or $CONDUCTOR_DATA_DIR):
# create the ingest topic, produce sample events, consume them, resume from a
# cursor. (`conductor demo` will replace this once the topology runtime lands.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CONDUCTOR_DATA_DIR="${CONDUCTOR_DATA_DIR:-$(mktemp -d -t conductor-demo.XXXXXX)}"
cargo build -q -p conductor
C="${CARGO_TARGET_DIR:-target}/debug/conductor"
echo "data directory: $CONDUCTOR_DATA_DIR"
set -x
"$C" topic create ig.ingest.entities --partitions 3
"$C" produce --topic ig.ingest.entities ops/samples/entities.jsonl
"$C" topic describe ig.ingest.entities
"$C" consume --topic ig.ingest.entities --tenant acme --limit 2
set +x
cursor="$("$C" consume --topic ig.ingest.entities --limit 5 | tail -n1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["cursor"])')"
echo "resuming after the 5th event with its cursor:"
"$C" consume --topic ig.ingest.entities --from "$cursor" --limit 3
echo
echo "Try next:"
echo "  $C consume --topic ig.ingest.entities --from latest --follow   # and produce from another shell"
echo "  $C schema list; $C schema show EntityUpserted"
echo "  $C schema check schemas/avro/EntityUpserted.avsc NEW.avsc --mode backward"
