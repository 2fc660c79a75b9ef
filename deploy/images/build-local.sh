#!/usr/bin/env bash
# Local equivalents of the official images docker-compose.yml uses, built here from Debian's packages, for
# machines that cannot pull from a registry (`CQRS_IMAGES=local make up`; deploy/local/compose.sh runs this):
#
#   cqrs-lab-local/debian:bookworm   the base: `debootstrap --variant=minbase` + `docker import`, from the apt
#                                    mirror this machine already uses (read from its apt sources);
#   cqrs-lab-local/python:3.11       Debian's python3 (3.11) for the Dockerfile (PYTHON_IMAGE);
#   cqrs-lab-local/postgres:15       Debian's postgresql-15 behind an entrypoint that does what Compose uses of
#                                    the official image (postgres/entrypoint.sh);
#   cqrs-lab-local/rabbitmq:3        Debian's rabbitmq-server (management and prometheus plugins);
#   cqrs-lab-local/prometheus:2      Debian's prometheus.
# Grafana has no Debian package: the local run leaves it out (its Compose profile `grafana`).
#
# Idempotent and cached: the base is made once, the others are ordinary cached builds (seconds when nothing
# changed). Where outbound TLS is re-signed by a local authority, pip inside a build needs the machine's CA
# bundle: the local Python image carries the bundle `pip config` names (or PIP_CERT, or the system one) and
# PIP_CERT pointing at it. Only these local images do; the Dockerfile's defaults never see it.
set -euo pipefail

log() { printf 'images: %s\n' "$*" >&2; }
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../local/docker-env.sh"
# The legacy builder: BuildKit would pull its Dockerfile frontend from a registry.
export DOCKER_BUILDKIT=0

BASE=cqrs-lab-local/debian:bookworm

# The first Debian mirror (deb822 .sources or one-line sources.list) that serves bookworm's main component.
debian_mirror() {
  local file
  for file in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$file" ] || continue
    case "$file" in
      *.sources)
        awk 'BEGIN{RS=""} /Suites:[^\n]*\<bookworm\>/ && /Components:[^\n]*\<main\>/ {
               if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { split(substr($0, RSTART, RLENGTH), u, /[ \t]+/); print u[2]; exit } }' "$file" ;;
      *) awk '$1 == "deb" && $0 ~ /[ \t]bookworm[ \t]/ && $0 ~ /[ \t]main/ {
               for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) { print $i; exit } }' "$file" ;;
    esac
  done | grep -v -e '-security' | head -n 1
}

build_base() {
  "$DOCKER" image inspect "$BASE" >/dev/null 2>&1 && return 0
  command -v debootstrap >/dev/null 2>&1 || {
    [ "$(id -u)" = 0 ] || { log "debootstrap is missing (apt-get install debootstrap, as root)"; exit 1; }
    bash "$here/../local/apt-install.sh" debootstrap
  }
  local mirror rootfs
  mirror="$(debian_mirror)"
  [ -n "$mirror" ] || { log "no Debian bookworm mirror in /etc/apt/sources*: cannot make the base image"; exit 1; }
  rootfs="$(mktemp -d /var/tmp/cqrs-lab-rootfs.XXXXXX)"
  trap 'rm -rf "$rootfs"' RETURN
  log "debootstrap bookworm from the machine's mirror (about two minutes, once)"
  local extra=()
  case "$mirror" in https:*) extra=(--include=ca-certificates) ;; esac
  debootstrap --variant=minbase "${extra[@]}" bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -n 20 "$rootfs.log" >&2; exit 1; }
  rm -f "$rootfs.log"
  # Smaller and quieter images: no package caches, no documentation, no recommends.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$rootfs/etc/apt/apt.conf.d/90cqrs-lab"
  printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n' \
    > "$rootfs/etc/dpkg/dpkg.cfg.d/90cqrs-lab"
  # Packages never start services inside an image build.
  printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d" && chmod +x "$rootfs/usr/sbin/policy-rc.d"
  tar -C "$rootfs" -c . | "$DOCKER" import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' - "$BASE" >/dev/null
  log "made $BASE"
}

build() {  # image directory [docker build arguments...]
  local image="$1" dir="$2"
  shift 2
  log "building $image"
  "$DOCKER" build --quiet --network host --build-arg BASE_IMAGE="$BASE" -t "$image" "$@" "$dir" >/dev/null
}

# The CA bundle pip uses here: PIP_CERT, else the one `pip config` names, else the system bundle.
ca_bundle() {
  local bundle="${PIP_CERT:-}"
  [ -n "$bundle" ] || bundle="$(python3 -m pip config get global.cert 2>/dev/null || true)"
  [ -n "$bundle" ] || bundle=/etc/ssl/certs/ca-certificates.crt
  echo "$bundle"
}

build_base
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp -r "$here/python/." "$context/"
cp "$(ca_bundle)" "$context/build-ca-bundle.crt"
build cqrs-lab-local/python:3.11 "$context"
build cqrs-lab-local/postgres:15 "$here/postgres"
build cqrs-lab-local/rabbitmq:3 "$here/rabbitmq"
build cqrs-lab-local/prometheus:2 "$here/prometheus"
