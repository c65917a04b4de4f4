#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit, integration and end-to-end tests
# (the end-to-end tests start clusters and need root).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
pier_need_packages ca-certificates openssl iproute2 nftables
pier_check_kubectl
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo test --locked --workspace
