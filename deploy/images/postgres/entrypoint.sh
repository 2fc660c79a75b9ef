#!/usr/bin/env bash
# The entrypoint of the local PostgreSQL image (build-local.sh), written for what docker-compose.yml relies on:
#   - the command is `postgres [-c name=value ...]` (arguments that start with '-' get `postgres` put first);
#   - on an empty data directory: initdb with POSTGRES_USER (postgres) and POSTGRES_PASSWORD as the superuser,
#     password (scram-sha-256) logins from any address, then a server reachable on its socket only runs
#     POSTGRES_DB's creation and every file of /docker-entrypoint-initdb.d in name order (*.sh: executed when
#     executable, else sourced; *.sql: run by psql), and stops; so a TCP pg_isready answers only afterwards;
#   - the server runs as the postgres user, in the foreground, as the container's main process.
# Any other command (psql, sh, ...) runs as it is, so the image also serves the one-shot replication-init step.
set -Eeuo pipefail

if [ "${1:0:1}" = - ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
  exec "$@"
fi

export POSTGRES_USER="${POSTGRES_USER:-postgres}"
export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"

if [ "$(id -u)" = 0 ]; then
  # A fresh named volume belongs to root: hand it to postgres, then run this script again as postgres.
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

say() { printf 'postgres-entrypoint: %s\n' "$*" >&2; }

# As the superuser over the socket, without a password (local connections are trusted by initdb's default).
sql() { psql -v ON_ERROR_STOP=1 -X -q --username "$POSTGRES_USER" --no-password "$@"; }

first_start() {
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    say "the data directory is empty and POSTGRES_PASSWORD is not set: refusing to create a superuser without one"
    exit 1
  fi
  say "creating the cluster in $PGDATA"
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  {
    echo "listen_addresses = '*'"
  } >> "$PGDATA/postgresql.conf"
  echo 'host all all all scram-sha-256' >> "$PGDATA/pg_hba.conf"

  # The initialisation server: the command's settings, but no TCP listener.
  shift
  pg_ctl -D "$PGDATA" -w -o "$(printf '%q ' "$@" -c listen_addresses=)" start >/dev/null
  if [ "$POSTGRES_DB" != postgres ] \
    && [ -z "$(sql --dbname postgres -tA -v db="$POSTGRES_DB" <<< "SELECT 1 FROM pg_database WHERE datname = :'db'")" ]; then
    sql --dbname postgres -v db="$POSTGRES_DB" <<< 'CREATE DATABASE :"db"'
  fi
  local script
  for script in /docker-entrypoint-initdb.d/*; do
    case "$script" in
      *.sh)
        say "running $script"
        if [ -x "$script" ]; then "$script"; else . "$script"; fi ;;
      *.sql)
        say "running $script"
        sql --dbname "$POSTGRES_DB" -f "$script" ;;
      *) [ -e "$script" ] && say "ignoring $script" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  say "initialisation complete"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  first_start "$@"
fi
exec "$@"
