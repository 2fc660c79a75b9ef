#!/usr/bin/env bash
# What the failure-injection tests (`make test-chaos`) need besides the venv: nft, to cut a TCP connection
# without closing it (tests/support/network_cut.py). Debian's nftables is installed when it is missing, and
# the script says so first; nothing else is installed.
set -euo pipefail

log() { printf 'chaos prerequisites: %s\n' "$*" >&2; }

if ! command -v nft >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { log "nft is missing: apt-get install nftables (as root)"; exit 1; }
  log "nft is missing: installing Debian's nftables package"
  bash "$(dirname "$0")/../../deploy/local/apt-install.sh" nftables
fi
