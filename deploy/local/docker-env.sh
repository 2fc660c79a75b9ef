# Sourced by the Docker scripts (deploy/local/ensure-docker.sh, deploy/images/build-local.sh, compose.sh):
#   DOCKER            the docker client ($DOCKER if set, else the first `docker` on PATH);
#   compose_command   prints the Compose command: `docker compose` (v2) when the client has it, else
#                     `docker-compose` (v1, Debian bookworm's), else nothing.
DOCKER="${DOCKER:-$(command -v docker || echo docker)}"

compose_command() {
  if "$DOCKER" compose version >/dev/null 2>&1; then
    echo "$DOCKER compose"
  elif command -v docker-compose >/dev/null 2>&1; then
    command -v docker-compose
  fi
}
