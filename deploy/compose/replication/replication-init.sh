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
#   write-db: a login role with REPLICATION that may only read `events`, and the publication of `events`
#             (inserts only, every column but the outbox's `published_at`);
#   read-db:  a replica table `events` owned by the superuser (the read role may only SELECT it, so nothing but
#             the subscription writes there) and the subscription `<read database>_events`.
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

psql_on() {  # host port database; SQL on stdin. psql's :'var' and :"var" quote every value.
    PGOPTIONS="-c client_min_messages=warning" psql -v ON_ERROR_STOP=1 -X -q -tA -h "$1" -p "$2" -d "$3" \
        -v repl_user="$REPLICATION_USER" -v repl_password="$REPLICATION_PASSWORD" \
        -v write_db="$WRITE_DB_NAME" -v read_user="$READ_DB_USER" \
        -v publication="$PUBLICATION" -v subscription="$SUBSCRIPTION" \
        -v publisher_conninfo="host=$PUBLISHER_HOST port=$PUBLISHER_PORT dbname=$WRITE_DB_NAME user=$REPLICATION_USER password=$REPLICATION_PASSWORD"
}

if [ "$(echo "SELECT to_regclass('public.events') IS NOT NULL" | psql_on "$WRITE_DB_HOST" "$WRITE_DB_PORT" "$WRITE_DB_NAME")" != t ]; then
    log "write database $WRITE_DB_NAME has no events table: the migrations must run first"
    exit 1
fi

psql_on "$WRITE_DB_HOST" "$WRITE_DB_PORT" "$WRITE_DB_NAME" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN REPLICATION PASSWORD %L', :'repl_user', :'repl_password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'repl_user') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', :'write_db', :'repl_user') \gexec
SELECT format('GRANT SELECT ON public.events TO %I', :'repl_user') \gexec
-- Every column but published_at, which only the relay sets and the read side never needs.
SELECT format('CREATE PUBLICATION %I FOR TABLE public.events (position, event_id, aggregate_type, aggregate_id, '
              'aggregate_version, event_type, schema_version, data, occurred_at, correlation_id, causation_id) '
              'WITH (publish = %L)', :'publication', 'insert')
 WHERE NOT EXISTS (SELECT FROM pg_publication WHERE pubname = :'publication') \gexec
SQL
log "publication $PUBLICATION of $WRITE_DB_NAME.events is in place"

psql_on "$READ_DB_HOST" "$READ_DB_PORT" "$READ_DB_NAME" <<'SQL'
CREATE TABLE IF NOT EXISTS public.events (
    position          bigint PRIMARY KEY,
    event_id          uuid NOT NULL UNIQUE,
    aggregate_type    varchar(32) NOT NULL,
    aggregate_id      uuid NOT NULL,
    aggregate_version integer NOT NULL,
    event_type        varchar(64) NOT NULL,
    schema_version    smallint NOT NULL,
    data              jsonb NOT NULL,
    occurred_at       timestamptz NOT NULL,
    correlation_id    varchar(128),
    causation_id      varchar(128),
    UNIQUE (aggregate_id, aggregate_version)
);
-- Subscriber-local, never published: filled by its default as the subscription applies each row, in the
-- publisher's COMMIT order; the projector's fallback scans the replica in this order.
ALTER TABLE public.events ADD COLUMN IF NOT EXISTS replica_seq bigint GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX IF NOT EXISTS events_replica_seq_idx ON public.events (replica_seq);
ALTER TABLE public.events OWNER TO CURRENT_USER;
REVOKE ALL ON public.events FROM PUBLIC;
SELECT format('GRANT SELECT ON public.events TO %I', :'read_user') \gexec
SELECT format('CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION %I WITH (copy_data = true)',
              :'subscription', :'publisher_conninfo', :'publication')
 WHERE NOT EXISTS (SELECT FROM pg_subscription WHERE subname = :'subscription') \gexec
SQL
log "subscription $SUBSCRIPTION in $READ_DB_NAME follows $PUBLICATION"
