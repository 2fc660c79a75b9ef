#!/usr/bin/env bash
# A Docker engine and Compose for `make up` and the Compose test tier (tests/compose), idempotently:
#   - installs Debian's docker.io (engine 20.10 and its client) and docker-compose (Compose v1) when missing;
#   - starts dockerd in the background (overlay2, log in /var/log/cqrs-lab-dockerd.log) when no engine answers,
#     for machines without systemd, and waits until it does.
# A machine that already has an engine (Docker Desktop, a systemd service) is used as it is. Compose v2
# (`docker compose`) is used when the client has it; Debian bookworm packages only v1 (`docker-compose`).
# Prints nothing on success when everything was already there.
set -euo pipefail

log() { printf 'docker: %s\n' "$*" >&2; }
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/local/docker-env.sh
. deploy/local/docker-env.sh

apt_install() {  # packages...
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    || { log "missing $*: install Docker (engine and Compose) or run this as root on Debian"; exit 1; }
  log "installing $*"
  bash deploy/local/apt-install.sh "$@"
}

engine_answers() { "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

missing=()
command -v dockerd >/dev/null 2>&1 || engine_answers || missing+=(docker.io)
[ -n "$(compose_command)" ] || missing+=(docker-compose)
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
  . deploy/local/docker-env.sh  # the new client may be the one to use
fi

if ! engine_answers; then
  if [ "$(id -u)" != 0 ] || ! command -v dockerd >/dev/null 2>&1; then
    log "no Docker engine answers and this is not root on a machine with dockerd: start Docker first"; exit 1
  fi
  log "starting dockerd (overlay2) in the background; its log: /var/log/cqrs-lab-dockerd.log"
  # setsid: the engine outlives the shell (and make) that started it, as a service would.
  setsid dockerd --storage-driver overlay2 >>/var/log/cqrs-lab-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    engine_answers && break
    sleep 1
  done
  engine_answers || { log "dockerd did not answer within 60 s:"; tail -n 20 /var/log/cqrs-lab-dockerd.log >&2; exit 1; }
  log "engine $("$DOCKER" version --format '{{.Server.Version}}') is up"
fi
