#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit, integration and end-to-end tests
# (the end-to-end tests start clusters and need root).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
pier_need_packages ca-certificates openssl iproute2 nftables curl procps bsdutils protobuf-compiler etcd-server haproxy dnsutils dnsperf unbound
pier_check_kubectl
# The target dir is shared between checkouts; binaries such as `debug/pier` land at a
# fixed path that another checkout may have overwritten while this one's fingerprints
# still say "fresh". Touching the binary's source makes cargo link it again from here.
touch crates/pier/src/main.rs
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings
# Benchmarks run in CI only as smoke checks: they must run, their numbers are not judged.
bench/run.sh --smoke
cargo build --release --locked -q -p pier -p pier-bench-node -p pier-bench-proxy -p pier-bench-dns
timeout --kill-after=5 180 "$CARGO_TARGET_DIR/release/pier-bench-node" --smoke --pier-bin "$CARGO_TARGET_DIR/release/pier"
timeout --kill-after=5 180 "$CARGO_TARGET_DIR/release/pier-bench-proxy" --smoke
timeout --kill-after=5 180 "$CARGO_TARGET_DIR/release/pier-bench-dns" --smoke
cargo test --locked --workspace
