#!/usr/bin/env bash
# Creates and starts, idempotently, everything the native run and the tests need on a Debian machine:
#   - two dedicated PostgreSQL clusters (write-db with wal_level=logical, read-db), leaving the system cluster alone;
#   - one role per service with its own databases (the dev database and a test database);
#   - a RabbitMQ vhost per use (dev and test) with one user per service and least privilege.
# Safe to run again and again: every step checks before it creates. Must run as root (Debian's tools then
# start PostgreSQL as the postgres user, which it requires).
set -euo pipefail

PG_VERSION="${PG_VERSION:-15}"
WRITE_DB_PORT="${WRITE_DB_PORT:-5433}"
READ_DB_PORT="${READ_DB_PORT:-5434}"
WRITE_CLUSTER="${WRITE_CLUSTER:-cqrs_write}"
READ_CLUSTER="${READ_CLUSTER:-cqrs_read}"
# Dev-only credentials; Compose and Kubernetes take theirs from .env and Secrets.
WRITE_DB_USER="${WRITE_DB_USER:-cqrs_write}"
WRITE_DB_PASSWORD="${WRITE_DB_PASSWORD:-cqrs_write}"
READ_DB_USER="${READ_DB_USER:-cqrs_read}"
READ_DB_PASSWORD="${READ_DB_PASSWORD:-cqrs_read}"
WRITE_DATABASES="${WRITE_DATABASES:-cqrs_write cqrs_write_test}"
READ_DATABASES="${READ_DATABASES:-cqrs_read cqrs_read_test}"
RABBITMQ_VHOSTS="${RABBITMQ_VHOSTS:-cqrs cqrs_test}"
RABBITMQ_WRITE_USER="${RABBITMQ_WRITE_USER:-write-service}"
RABBITMQ_WRITE_PASSWORD="${RABBITMQ_WRITE_PASSWORD:-write-service}"
RABBITMQ_READ_USER="${RABBITMQ_READ_USER:-read-service}"
RABBITMQ_READ_PASSWORD="${RABBITMQ_READ_PASSWORD:-read-service}"
RABBITMQ_REPORTING_USER="${RABBITMQ_REPORTING_USER:-reporting}"
RABBITMQ_REPORTING_PASSWORD="${RABBITMQ_REPORTING_PASSWORD:-reporting}"

log() { printf 'infra: %s\n' "$*" >&2; }

need() {
  command -v "$1" >/dev/null 2>&1 || { log "missing $1 (install PostgreSQL $PG_VERSION and RabbitMQ from Debian)"; exit 1; }
}

psql_as_postgres() {  # port, database, sql...
  local port=$1 db=$2; shift 2
  runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d "$db" -tA "$@"
}

ensure_cluster() {  # name, port, settings as name=value...
  local name=$1 port=$2; shift 2
  local setting options=()
  for setting in "$@"; do options+=(-o "$setting"); done
  if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$PG_VERSION $name"; then
    log "creating PostgreSQL $PG_VERSION cluster $name on port $port"
    pg_createcluster "$PG_VERSION" "$name" -p "$port" "${options[@]}" >/dev/null
  fi
  start_cluster "$name" "$port"
  converge_settings "$name" "$port" "$@"
}

start_cluster() {  # name, port
  local name=$1 port=$2 i
  if ! pg_lsclusters -h | awk -v v="$PG_VERSION" -v n="$name" '$1==v && $2==n {print $4}' | grep -q online; then
    log "starting cluster $name"
    pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$name" start
  fi
  for i in $(seq 1 50); do
    runuser -u postgres -- pg_isready -q -p "$port" && return 0
    sleep 0.2
  done
  log "cluster $name did not become ready on port $port"; exit 1
}

converge_settings() {  # name, port, settings as name=value...
  # A cluster created by an older version of this script gets today's settings too; settings that only
  # take effect at start-up (replication workers, slots) restart the cluster once.
  local name=$1 port=$2 setting key value changed=0; shift 2
  for setting in "$@"; do
    key=${setting%%=*} value=${setting#*=}
    if [ "$(psql_as_postgres "$port" postgres -c "SELECT setting = '$value' OR current_setting('$key') = '$value'
                                                  FROM pg_settings WHERE name = '$key'")" != t ]; then
      log "cluster $name: setting $key = $value"
      psql_as_postgres "$port" postgres -c "ALTER SYSTEM SET $key = '$value'"
      changed=1
    fi
  done
  [ "$changed" = 1 ] || return 0
  psql_as_postgres "$port" postgres -c "SELECT pg_reload_conf()" >/dev/null
  if [ -n "$(psql_as_postgres "$port" postgres -c "SELECT 1 FROM pg_settings WHERE pending_restart")" ]; then
    log "restarting cluster $name for settings that need it"
    pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$name" restart
    start_cluster "$name" "$port"
  fi
}

ensure_role_and_databases() {  # port, role, password, databases...
  local port=$1 role=$2 password=$3; shift 3
  psql_as_postgres "$port" postgres <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN
    CREATE ROLE "$role" LOGIN PASSWORD '$password';
  ELSE
    ALTER ROLE "$role" LOGIN PASSWORD '$password';
  END IF;
END \$\$;
SQL
  local db
  for db in "$@"; do
    if [ -z "$(psql_as_postgres "$port" postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
      log "creating database $db on port $port"
      psql_as_postgres "$port" postgres -c "CREATE DATABASE \"$db\" OWNER \"$role\""
    fi
    # Only the owning service role (and superusers) may connect.
    psql_as_postgres "$port" postgres -c "REVOKE CONNECT, TEMPORARY ON DATABASE \"$db\" FROM PUBLIC"
    # The role creates its tables in `public` but does not own it: a schema's owner may drop anything in it,
    # the superuser's replica of `events` included (deploy/compose/replication/subscriber.sql).
    psql_as_postgres "$port" "$db" -c "ALTER SCHEMA public OWNER TO postgres" \
      -c "GRANT USAGE, CREATE ON SCHEMA public TO \"$role\""
  done
}

ensure_rabbitmq() {
  local vhost user
  for vhost in $RABBITMQ_VHOSTS; do
    rabbitmqctl -q list_vhosts | grep -qx "$vhost" || rabbitmqctl -q add_vhost "$vhost"
  done
  for user in "$RABBITMQ_WRITE_USER:$RABBITMQ_WRITE_PASSWORD" "$RABBITMQ_READ_USER:$RABBITMQ_READ_PASSWORD" \
              "$RABBITMQ_REPORTING_USER:$RABBITMQ_REPORTING_PASSWORD"; do
    local name=${user%%:*} password=${user#*:}
    if rabbitmqctl -q list_users | awk '{print $1}' | grep -qx "$name"; then
      rabbitmqctl -q change_password "$name" "$password" >/dev/null
    else
      rabbitmqctl -q add_user "$name" "$password" >/dev/null
    fi
  done
  # Least privilege (configure, write, read regexes). The read side owns the topology (cqrs_common.messaging):
  # it declares exchanges, queues and bindings (binding needs write on the queue and read on the exchange;
  # a queue with a dead-letter exchange needs read on the queue and write on the DLX), consumes, and replays
  # dead letters into cqrs.events. The write side only declares and publishes to cqrs.events, with
  # `mandatory`, so an event no queue takes is refused and stays in the outbox; it can read no queue.
  # The reporting subscriber owns its `reporting.*` queues and their dead-letter exchange, and reads (binds to)
  # cqrs.events: it can neither publish an event nor touch the projector's queues.
  # The projector's partitions: the consistent-hash exchange `read-service.projector.partitions` and the queues
  # `read-service.projector.p0`, `.p1`, ...
  local topology='^(cqrs\.events|cqrs\.events\.dlx|read-service\.projector|read-service\.projector\.dlq|read-service\.projector\.partitions|read-service\.projector\.p[0-9]+)$'
  local reporting='^reporting\..+$'
  for vhost in $RABBITMQ_VHOSTS; do
    rabbitmqctl -q set_permissions -p "$vhost" "$RABBITMQ_WRITE_USER" \
      '^cqrs\.events$' '^cqrs\.events$' '^$'
    rabbitmqctl -q set_permissions -p "$vhost" "$RABBITMQ_READ_USER" \
      "$topology" "$topology" "$topology"
    rabbitmqctl -q set_permissions -p "$vhost" "$RABBITMQ_REPORTING_USER" \
      "$reporting" "$reporting" '^(cqrs\.events|reporting\..+)$'
  done
  # Metrics for Prometheus (port 15692) and the management UI (15672), and the consistent-hash exchange that
  # splits the projector's events into partitions by account (docs/decisions/0008); enabling is idempotent.
  local plugins='rabbitmq_prometheus rabbitmq_management rabbitmq_consistent_hash_exchange'
  # shellcheck disable=SC2086 # one word per plugin
  rabbitmq-plugins -q enable --online $plugins >/dev/null 2>&1 \
    || rabbitmq-plugins -q enable --offline $plugins >/dev/null
}

main() {
  [ "$(id -u)" = 0 ] || { log "run as root (PostgreSQL clusters are created through Debian's pg_createcluster)"; exit 1; }
  need pg_createcluster; need rabbitmqctl
  # Room for the subscriptions of the dev, test and bench databases (and an event store) with spare workers
  # for their initial table copies.
  ensure_cluster "$WRITE_CLUSTER" "$WRITE_DB_PORT" \
    wal_level=logical max_slot_wal_keep_size=1GB max_replication_slots=32 max_wal_senders=32 max_connections=200
  ensure_cluster "$READ_CLUSTER" "$READ_DB_PORT" \
    max_connections=200 max_logical_replication_workers=16 max_worker_processes=24
  # shellcheck disable=SC2086
  ensure_role_and_databases "$WRITE_DB_PORT" "$WRITE_DB_USER" "$WRITE_DB_PASSWORD" $WRITE_DATABASES
  # shellcheck disable=SC2086
  ensure_role_and_databases "$READ_DB_PORT" "$READ_DB_USER" "$READ_DB_PASSWORD" $READ_DATABASES
  ensure_rabbitmq
  log "ready: write-db :$WRITE_DB_PORT, read-db :$READ_DB_PORT, rabbitmq vhosts: $RABBITMQ_VHOSTS"
}

main "$@"
