#!/usr/bin/env bash
# Brings a single-node Pier cluster up in the foreground: installs dependencies,
# builds, runs `pier up`. Stop it with Ctrl-C.
#   scripts/up.sh [--data-dir DIR] [--api-port PORT] [...any `pier up` flag]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
pier_need_packages ca-certificates openssl iproute2 nftables curl
pier_check_kubectl
cargo build --release --locked -p pier
args=("$@")
if [[ " ${args[*]-} " != *" --data-dir"* ]]; then
  args+=(--data-dir /var/lib/pier)
fi
exec "$CARGO_TARGET_DIR/release/pier" up "${args[@]}"
