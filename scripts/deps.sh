#!/usr/bin/env bash
# Installs what Pier needs from Debian's packages, once. Sourced by up.sh and test.sh.
set -euo pipefail

pier_need_packages() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

pier_check_kubectl() {
  if ! command -v kubectl >/dev/null 2>&1; then
    echo "error: kubectl is not installed; Pier is driven by the real kubectl" >&2
    exit 1
  fi
}

# Builds share one target directory outside the clone, so CI and repeated clones reuse it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pier-target}"
