#!/bin/sh
# Logical replication of the write database's `events` table into the read database (the read side's fallback
# path, CONTRACT.md), for containers. It sets up what deploy/local/replication.sh sets up natively, over TCP
# to two servers instead of through local sockets. The `replication-init` service of docker-compose.yml and the
# `replication-init` Job of deploy/k8s run it as the PostgreSQL superuser after the migrations (PostgreSQL 15
# lets only a superuser create a subscription). Safe to run again: every step checks first.
#
# The optional event store subscribes the same way: the `event-store-init` service (profile `eventstore`) and the
# Job of deploy/k8s/components/eventstore run this script with READ_DB_* naming the event store and a
# SUBSCRIPTION of its own (each subscription has its own slot on write-db).
#
# The SQL is in publisher.sql and subscriber.sql beside this script (the very files deploy/local/replication.sh
# runs natively): Compose mounts this directory at /scripts, Kubernetes the `replication-init` ConfigMap made
# from the three files.
#
# Variables: PGUSER/PGPASSWORD (the superuser on both servers), WRITE_DB_HOST, WRITE_DB_NAME, READ_DB_HOST,
# READ_DB_NAME, READ_DB_USER, REPLICATION_USER, REPLICATION_PASSWORD; optional WRITE_DB_PORT, READ_DB_PORT
# (5432), PUBLISHER_HOST/PUBLISHER_PORT (write-db as the read-db server reaches it; default WRITE_DB_*),
# PUBLICATION (cqrs_events), SUBSCRIPTION (<read database>_events).
set -eu
: "${WRITE_DB_HOST:?}" "${WRITE_DB_NAME:?}" "${READ_DB_HOST:?}" "${READ_DB_NAME:?}" "${READ_DB_USER:?}"
: "${REPLICATION_USER:?}" "${REPLICATION_PASSWORD:?}"
WRITE_DB_PORT="${WRITE_DB_PORT:-5432}"
READ_DB_PORT="${READ_DB_PORT:-5432}"
PUBLISHER_HOST="${PUBLISHER_HOST:-$WRITE_DB_HOST}"
PUBLISHER_PORT="${PUBLISHER_PORT:-$WRITE_DB_PORT}"
PUBLICATION="${PUBLICATION:-cqrs_events}"
SUBSCRIPTION="${SUBSCRIPTION:-${READ_DB_NAME}_events}"

log() { echo "replication-init: $*" >&2; }

HERE="$(dirname "$0")"

psql_on() {  # host port database; SQL on stdin, names and secrets as psql variables (the SQL quotes them).
    PGOPTIONS="-c client_min_messages=warning" psql -v ON_ERROR_STOP=1 -X -q -tA -h "$1" -p "$2" -d "$3" \
        -v repl_user="$REPLICATION_USER" -v repl_password="$REPLICATION_PASSWORD" \
        -v read_user="$READ_DB_USER" -v publication="$PUBLICATION" -v subscription="$SUBSCRIPTION" \
        -v publisher_conninfo="host=$PUBLISHER_HOST port=$PUBLISHER_PORT dbname=$WRITE_DB_NAME user=$REPLICATION_USER password=$REPLICATION_PASSWORD"
}

if [ "$(echo "SELECT to_regclass('public.events') IS NOT NULL" | psql_on "$WRITE_DB_HOST" "$WRITE_DB_PORT" "$WRITE_DB_NAME")" != t ]; then
    log "write database $WRITE_DB_NAME has no events table: the migrations must run first"
    exit 1
fi

psql_on "$WRITE_DB_HOST" "$WRITE_DB_PORT" "$WRITE_DB_NAME" <"$HERE/publisher.sql"
log "publication $PUBLICATION of $WRITE_DB_NAME.events is in place"

psql_on "$READ_DB_HOST" "$READ_DB_PORT" "$READ_DB_NAME" <"$HERE/subscriber.sql"
log "subscription $SUBSCRIPTION in $READ_DB_NAME follows $PUBLICATION"
