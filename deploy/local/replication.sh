#!/usr/bin/env bash
# Logical replication of the write database's `events` table into the read database (the fallback path).
#
# Runs after migrations (the table must exist on the publisher) and is idempotent. The SQL is the one the
# containers run (deploy/compose/replication/publisher.sql and subscriber.sql, see their headers), given to
# psql as the superuser over the local sockets:
#   write-db: a replication role that can only read `events`, and a publication of `events` (inserts only,
#             of the columns the replica has);
#   read-db:  a replica table `events` owned by the superuser, in a schema `public` the superuser owns (the
#             read-service role may only SELECT it, so nothing but the subscription writes there: a
#             conflicting row would halt the stream), and a subscription, which PostgreSQL 15 lets only a
#             superuser create.
# Pairs are given as "write_db:read_db" in REPLICATION_PAIRS (the dev and the test databases by default; an
# empty value sets up none).
#
# The optional event store (a third PostgreSQL, the read side's source for rebuilds when present) subscribes to
# the same publication the same way: pairs "write_db:store_db" in EVENT_STORE_PAIRS (none by default), on the
# server at EVENT_STORE_PORT, whose replica table EVENT_STORE_USER (a role that exists there) may read.
set -euo pipefail

WRITE_DB_PORT="${WRITE_DB_PORT:-5433}"
READ_DB_PORT="${READ_DB_PORT:-5434}"
WRITE_DB_HOST_FROM_READ="${WRITE_DB_HOST_FROM_READ:-127.0.0.1}"
READ_DB_USER="${READ_DB_USER:-cqrs_read}"
REPLICATION_USER="${REPLICATION_USER:-cqrs_replicator}"
REPLICATION_PASSWORD="${REPLICATION_PASSWORD:-cqrs_replicator}"
REPLICATION_PAIRS="${REPLICATION_PAIRS-cqrs_write:cqrs_read cqrs_write_test:cqrs_read_test}"
EVENT_STORE_PAIRS="${EVENT_STORE_PAIRS:-}"
EVENT_STORE_PORT="${EVENT_STORE_PORT:-5435}"
EVENT_STORE_USER="${EVENT_STORE_USER:-cqrs_events}"
PUBLICATION="${PUBLICATION:-cqrs_events}"

SQL_DIR="$(cd "$(dirname "$0")/../compose/replication" && pwd)"

log() { printf 'replication: %s\n' "$*" >&2; }

sql() {  # port, database, then psql arguments (psql reads the SQL from this script's stdin)
  local port=$1 db=$2; shift 2
  PGOPTIONS="-c client_min_messages=warning" runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d "$db" -tA "$@"
}

ensure_publisher() {  # write database
  sql "$WRITE_DB_PORT" "$1" -v repl_user="$REPLICATION_USER" -v repl_password="$REPLICATION_PASSWORD" \
    -v publication="$PUBLICATION" <"$SQL_DIR/publisher.sql"
}

ensure_subscriber() {  # write database, subscriber database, its port, the role that may read the replica
  local write_db=$1 read_db=$2 port=$3 reader=$4
  log "subscribing $read_db to $write_db"
  sql "$port" "$read_db" -v read_user="$reader" -v publication="$PUBLICATION" -v subscription="${read_db}_events" \
    -v publisher_conninfo="host=$WRITE_DB_HOST_FROM_READ port=$WRITE_DB_PORT dbname=$write_db user=$REPLICATION_USER password=$REPLICATION_PASSWORD" \
    <"$SQL_DIR/subscriber.sql"
}

main() {
  [ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }
  local pair
  for pair in $REPLICATION_PAIRS; do
    ensure_publisher "${pair%%:*}"
    ensure_subscriber "${pair%%:*}" "${pair#*:}" "$READ_DB_PORT" "$READ_DB_USER"
  done
  for pair in $EVENT_STORE_PAIRS; do
    ensure_publisher "${pair%%:*}"
    ensure_subscriber "${pair%%:*}" "${pair#*:}" "$EVENT_STORE_PORT" "$EVENT_STORE_USER"
  done
  log "ready: ${REPLICATION_PAIRS:-no read databases}${EVENT_STORE_PAIRS:+; event store: $EVENT_STORE_PAIRS}"
}

main "$@"
