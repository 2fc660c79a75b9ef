#!/usr/bin/env bash
# Usage: install-missing.sh COMMAND PACKAGE WHY
# Installs Debian's PACKAGE (through apt-install.sh) when COMMAND is missing, saying so first (WHY: what needs
# it); nothing else is installed. Without root, it names the package to install and fails. The Makefile's
# targets call it for the tools their tiers need besides the venv (wrk for the benchmark, nft for the chaos
# tier), and prerequisites.sh for docker-compose.
set -euo pipefail

command=$1 package=$2 why=$3
log() { printf 'prerequisites (%s): %s\n' "$why" "$*" >&2; }

if ! command -v "$command" >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { log "$command is missing: apt-get install $package (as root)"; exit 1; }
  log "$command is missing: installing Debian's $package package"
  bash "$(dirname "$0")/apt-install.sh" "$package"
fi
