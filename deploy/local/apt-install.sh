#!/usr/bin/env bash
# Installs Debian packages for the project's scripts: `apt-install.sh [apt-get install options] package...`.
# Runs `apt-get update` only when the package lists do not know a package. Several scripts may install at once
# (tiers of one CI run, two checkouts, an operator's own apt): they wait for each other on a lock of their own
# and for any other apt or dpkg on dpkg's lock, instead of failing on it.
set -euo pipefail

log() { printf 'apt-install: %s\n' "$*" >&2; }

[ "$#" -gt 0 ] || { log "usage: $0 [apt-get install options] package..."; exit 2; }
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  log "cannot install $*: run as root on Debian, or install them yourself"; exit 1
fi

# Our own lock orders our installs (dpkg's lock does not cover `apt-get update`). It is held on fd 9, which
# apt-get does not inherit (9>&-), so a service a package's maintainer script starts cannot keep it.
exec 9>/var/lock/cqrs-lab-apt-install.lock
flock 9
wait_for_dpkg=(-o DPkg::Lock::Timeout=600)
install() { DEBIAN_FRONTEND=noninteractive apt-get "${wait_for_dpkg[@]}" install -y -q "$@" >/dev/null 9>&-; }
install "$@" || { apt-get "${wait_for_dpkg[@]}" update -q >/dev/null 9>&- && install "$@"; }
