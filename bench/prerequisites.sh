#!/usr/bin/env bash
# What `make bench` needs besides the venv: wrk, for the HTTP scenario. Debian's package is installed when
# missing, and the script says so first; nothing else is installed.
set -euo pipefail

log() { printf 'bench prerequisites: %s\n' "$*" >&2; }

if ! command -v wrk >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { log "wrk is missing: apt-get install wrk (as root)"; exit 1; }
  log "wrk is missing: installing Debian's wrk package"
  bash "$(dirname "$0")/../deploy/local/apt-install.sh" wrk
fi
