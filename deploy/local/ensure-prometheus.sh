#!/usr/bin/env bash
# Installs Debian's Prometheus (prometheus and promtool) when it is missing, idempotently. `make run` then
# starts it beside the services (deploy/local/prometheus.sh) and tests/deploy use promtool and a throwaway
# Prometheus to check the alert rules and the dashboards' expressions. Prometheus is optional for `make run`:
# without root or apt this only says so.
set -euo pipefail

log() { printf 'prometheus: %s\n' "$*" >&2; }

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  log "not installed; as root: apt-get install prometheus (make run works without it)"; exit 0
fi

log "installing Debian's prometheus package"
# The package would start its own Prometheus on :9090 through its init script; ours is started by supervisord
# with this project's configuration. A policy-rc.d that forbids service starts keeps the package's one down
# (the standard Debian mechanism; only created, and then removed, if none exists).
policy=/usr/sbin/policy-rc.d
created_policy=false
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=true
fi
trap '[ "$created_policy" = true ] && rm -f "$policy"' EXIT
bash "$(dirname "$0")/apt-install.sh" --no-install-recommends prometheus
log "installed $(prometheus --version 2>&1 | head -n1)"
