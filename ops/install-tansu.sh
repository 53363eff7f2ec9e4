#!/usr/bin/env bash
# Installs the tansu Kafka-protocol broker used by the Kafka log tests.
#
# Usage: ops/install-tansu.sh
# Idempotent: does nothing when "$CONDUCTOR_TOOLS/bin/tansu --version" already works.
# CONDUCTOR_TOOLS defaults to $HOME/.cache/conductor-tools.
set -euo pipefail

TANSU_VERSION="0.6.0"
TOOLS="${CONDUCTOR_TOOLS:-$HOME/.cache/conductor-tools}"
BIN="$TOOLS/bin/tansu"

if [[ -x "$BIN" ]] && version="$("$BIN" --version 2>/dev/null)"; then
    echo "tansu already installed: $BIN ($version)"
    exit 0
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust (https://rustup.rs) to build tansu" >&2
    exit 1
fi

echo "installing tansu $TANSU_VERSION into $TOOLS (a release build, several minutes)..."
cargo install "tansu@$TANSU_VERSION" --locked --features libsql --root "$TOOLS"
"$BIN" --version
