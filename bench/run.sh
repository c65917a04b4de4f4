#!/usr/bin/env bash
# Builds the release `pier` binary and the API server benchmark, runs the benchmark
# (Pier against etcd in the same run) and prints the report.
#
#   bench/run.sh                 full run (about a minute after the build), table on stdout, JSON in $CARGO_TARGET_DIR/bench-results/
#   bench/run.sh --smoke         tiny run that only checks everything works (CI smoke check)
#   bench/run.sh [ARGS...]       extra ARGS go to pier-bench-apiserver (see --help)
#
# Needs kubectl and etcd (Debian package etcd-server) and protoc (protobuf-compiler, to
# build the etcd client); installs the last two with apt-get when missing and root.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pier-target}"

need_apt=()
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
if ((${#need_apt[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
        echo "[run.sh] installing ${need_apt[*]}" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "[run.sh] missing ${need_apt[*]} (apt-get install them as root)" >&2
        exit 1
    fi
fi
command -v kubectl >/dev/null 2>&1 || { echo "[run.sh] kubectl is not on PATH" >&2; exit 1; }

cd "$repo"
echo "[run.sh] building (release) in $CARGO_TARGET_DIR" >&2
cargo build --release -q -p pier -p pier-bench-apiserver

bench="$CARGO_TARGET_DIR/release/pier-bench-apiserver"
args=(--pier-bin "$CARGO_TARGET_DIR/release/pier")
smoke=0
for a in "$@"; do [[ $a == --smoke ]] && smoke=1; done
if ((smoke)); then
    # The smoke run is bounded on its own (each phase at most 10 s, tiny sizes); the
    # timeout is a backstop.
    exec timeout --kill-after=5 120 "$bench" "${args[@]}" "$@"
fi
mkdir -p "$CARGO_TARGET_DIR/bench-results"
out="$CARGO_TARGET_DIR/bench-results/apiserver-$(date -u +%Y%m%dT%H%M%SZ).json"
echo "[run.sh] load before the run: $(cut -d' ' -f1-3 /proc/loadavg) (other builds on this machine make numbers noisy)" >&2
timeout --kill-after=10 1800 "$bench" "${args[@]}" --json "$out" "$@"
