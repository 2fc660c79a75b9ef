#!/usr/bin/env bash
# Compose for the Makefile (`make up`, `make down`, `make logs`, `make ps`) and the Compose test tier, with
# Compose v2 (`docker compose`) or v1 (`docker-compose`), whichever the machine has:
#   compose.sh up        engine ensured (ensure-docker.sh), images chosen, everything built and started in the
#                        background (PROJECTORS projector containers, default 1), waited for until healthy,
#                        then the URLs printed;
#   compose.sh prepare   the same without starting anything (the Compose test tier's first step);
#   compose.sh down      containers, networks and volumes removed (the eventstore and cluster profiles' too);
#   compose.sh ARGS...   any other Compose command on the same project (logs -f, ps, stop rabbitmq, ...).
#
# Images: CQRS_IMAGES=official pulls the official images (the Compose file's defaults); CQRS_IMAGES=local builds
# Debian-based equivalents here (deploy/images/build-local.sh) and leaves Grafana out (no Debian package); unset,
# the official ones are used when they are present or can be pulled, the local ones otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/local/docker-env.sh

log() { printf 'compose: %s\n' "$*" >&2; }

OFFICIAL_PROBE=postgres:15-bookworm

use_local_images() {
  export PYTHON_IMAGE=cqrs-lab-local/python:3.11 POSTGRES_IMAGE=cqrs-lab-local/postgres:15
  export RABBITMQ_IMAGE=cqrs-lab-local/rabbitmq:3 PROMETHEUS_IMAGE=cqrs-lab-local/prometheus:2
  # The override puts Grafana behind a profile (`grafana`) that the local run does not activate.
  export COMPOSE_FILE="${COMPOSE_FILE:-docker-compose.yml}:deploy/compose/local-images.yml"
}

# Which images: the decision is kept in var/compose-images.<project> so that later commands (ps, stop, down)
# address the same project files as `up` did.
choose_images() {
  local choice="${CQRS_IMAGES:-}"
  if [ -z "$choice" ] && [ -r "$STATE" ]; then
    choice="$(cat "$STATE")"
  fi
  if [ -z "$choice" ] || [ "$choice" = auto ]; then
    if "$DOCKER" image inspect "$OFFICIAL_PROBE" >/dev/null 2>&1 || "$DOCKER" pull -q "$OFFICIAL_PROBE" >/dev/null 2>&1; then
      choice=official
    else
      log "the official images cannot be pulled here: building local ones from Debian's packages"
      choice=local
    fi
  fi
  case "$choice" in
    local) use_local_images ;;
    official) ;;
    *) log "CQRS_IMAGES must be official, local or auto, not '$choice'"; exit 2 ;;
  esac
  mkdir -p var && echo "$choice" > "$STATE"
  CHOICE="$choice"
}

COMPOSE=()
read -r -a COMPOSE <<< "$(compose_command)"

# Compose v1 has no `up --wait`: poll the project's containers until each is healthy (or, without a health
# check, running; one-shot steps exited 0). A container that exited non-zero, or a timeout, fails.
wait_healthy() {
  local deadline=$((SECONDS + ${COMPOSE_WAIT_SECONDS:-300})) ids states bad pending
  while :; do
    ids="$("${COMPOSE[@]}" ps -q)"
    states="$("$DOCKER" inspect --format '{{.Name}} {{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' $ids)"
    bad="$(awk '$2 == "exited" && $3 != 0' <<< "$states")"
    pending="$(awk '!(($2 == "exited" && $3 == 0) || ($2 == "running" && ($4 == "healthy" || $4 == "none")))' <<< "$states")"
    if [ -n "$bad" ]; then
      log "failed: $bad"; return 1
    fi
    [ -z "$pending" ] && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "not healthy in time:"; printf '%s\n' "$pending" >&2; return 1
    fi
    sleep 2
  done
}

print_urls() {
  local e=127.0.0.1
  local projector="http://$e:${PROJECTOR_METRICS_HOST_PORTS:-9102}/metrics"
  if [ "${PROJECTORS:-1}" -gt 1 ]; then
    projector="x$PROJECTORS, one port each of $PROJECTOR_METRICS_HOST_PORTS (\`make ps\` shows which)"
  fi
  cat <<URLS
cqrs-lab is up (stop it with: make down)
  write-service   http://$e:${WRITE_SERVICE_HOST_PORT:-8001}/api/accounts   OpenAPI: http://$e:${WRITE_SERVICE_HOST_PORT:-8001}/api/schema
  read-service    http://$e:${READ_SERVICE_HOST_PORT:-8002}/api/stats       OpenAPI: http://$e:${READ_SERVICE_HOST_PORT:-8002}/api/schema
  metrics         relay http://$e:${RELAY_METRICS_HOST_PORT:-9101}/metrics   projector $projector
  Prometheus      http://$e:${PROMETHEUS_HOST_PORT:-9090}
  RabbitMQ        http://$e:${RABBITMQ_MANAGEMENT_HOST_PORT:-15673} (admin / ${RABBITMQ_ADMIN_PASSWORD:-admin}), AMQP $e:${RABBITMQ_AMQP_HOST_PORT:-5673}
  databases       write-db $e:${WRITE_DB_HOST_PORT:-15433}, read-db $e:${READ_DB_HOST_PORT:-15434}
URLS
  if [ "$CHOICE" = official ]; then
    echo "  Grafana         http://$e:${GRAFANA_HOST_PORT:-3000}"
  else
    echo "  Grafana         not run with the local images (no Debian package)"
  fi
}

# .env as Compose reads it: a variable already in the environment wins (`make up PROJECTORS=2` over .env's 1).
if [ -f .env ]; then
  while IFS='=' read -r key value; do
    case "$key" in '' | \#*) continue ;; esac
    [ -n "${!key+set}" ] || export "$key=$value"
  done < .env
fi
# The project's name whatever the folder is called (containers, networks and volumes start with it).
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-cqrs-lab}"
STATE="var/compose-images.$COMPOSE_PROJECT_NAME"

# Engine, Compose, the images chosen and built (the app image included): everything `up` needs but starting.
prepare() {
  bash deploy/local/ensure-docker.sh
  read -r -a COMPOSE <<< "$(compose_command)"
  choose_images
  if [ "$CHOICE" = local ]; then
    bash deploy/images/build-local.sh
    # BuildKit would pull its Dockerfile frontend from a registry: the engine's own builder needs none.
    export DOCKER_BUILDKIT=0
  fi
  # The one app image every app service runs (`up` then finds it built).
  "${COMPOSE[@]}" build --quiet migrate
}

case "${1:-}" in
  prepare)
    prepare
    ;;
  up)
    shift
    prepare
    # PROJECTORS projector containers (`make up PROJECTORS=2`): each claims a number among them at start. Their
    # metrics host ports: 9102 for one; for several a port each from a range clear of the reporting's 9103.
    scale=(--scale "projector=${PROJECTORS:-1}")
    # (a single port, .env's default, cannot serve several containers: the default range replaces it).
    if [ "${PROJECTORS:-1}" -gt 1 ] && [[ "${PROJECTOR_METRICS_HOST_PORTS:-}" != *-* ]]; then
      export PROJECTOR_METRICS_HOST_PORTS=9110-9119
    fi
    if [ "$(basename "${COMPOSE[0]}")" = docker ]; then
      "${COMPOSE[@]}" up --detach --wait "${scale[@]}" "$@"
    else
      "${COMPOSE[@]}" up --detach "${scale[@]}" "$@"
      wait_healthy
    fi
    print_urls
    ;;
  down)
    shift
    choose_images
    COMPOSE_FILE="${COMPOSE_FILE:-docker-compose.yml}:deploy/compose/eventstore.yml:deploy/compose/rabbitmq-cluster.yml" \
      "${COMPOSE[@]}" --profile eventstore --profile cluster --profile grafana down --volumes --remove-orphans "$@"
    rm -f "$STATE"
    ;;
  "")
    log "usage: compose.sh up|down|COMPOSE ARGS..."; exit 2 ;;
  *)
    choose_images
    exec "${COMPOSE[@]}" "$@"
    ;;
esac
