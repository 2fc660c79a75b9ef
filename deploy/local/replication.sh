#!/usr/bin/env bash
# Logical replication of the write database's `events` table into the read database (the fallback path).
#
# Runs after migrations (the table must exist on the publisher) and is idempotent:
#   write-db: a replication role that can only read `events`, and a publication of `events` (inserts only,
#             without the outbox column `published_at`);
#   read-db:  a replica table `events` owned by the superuser (the read-service role may only SELECT it, so
#             nothing but the subscription writes there: a conflicting row would halt the stream), and a
#             subscription, which PostgreSQL 15 lets only a superuser create.
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

# Every column but published_at, which only the relay sets and the read side never needs.
COLUMNS="position, event_id, aggregate_type, aggregate_id, aggregate_version, event_type, schema_version,
         data, occurred_at, correlation_id, causation_id"

log() { printf 'replication: %s\n' "$*" >&2; }

sql() {  # port, database, then psql arguments
  local port=$1 db=$2; shift 2
  PGOPTIONS="-c client_min_messages=warning" runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d "$db" -tA "$@"
}

ensure_publisher() {  # write database
  local db=$1
  sql "$WRITE_DB_PORT" "$db" <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$REPLICATION_USER') THEN
    CREATE ROLE "$REPLICATION_USER" LOGIN REPLICATION PASSWORD '$REPLICATION_PASSWORD';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_publication WHERE pubname = '$PUBLICATION') THEN
    CREATE PUBLICATION "$PUBLICATION" FOR TABLE events ($COLUMNS) WITH (publish = 'insert');
  END IF;
END \$\$;
GRANT CONNECT ON DATABASE "$db" TO "$REPLICATION_USER";
GRANT SELECT ON events TO "$REPLICATION_USER";
SQL
}

ensure_subscriber() {  # write database, subscriber database, its port, the role that may read the replica
  local write_db=$1 read_db=$2 port=$3 reader=$4 subscription="${2}_events"
  sql "$port" "$read_db" <<SQL
CREATE TABLE IF NOT EXISTS events (
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
-- Subscriber-local, never published: filled by its default as the subscription applies each row, and the
-- subscription applies transactions in the publisher's COMMIT order, so replica_seq follows commit order
-- (positions come from a sequence and do not). The projector's fallback scans the replica in this order.
ALTER TABLE events ADD COLUMN IF NOT EXISTS replica_seq bigint GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX IF NOT EXISTS events_replica_seq_idx ON events (replica_seq);
ALTER TABLE events OWNER TO postgres;
REVOKE ALL ON events FROM PUBLIC;
GRANT SELECT ON events TO "$reader";
SQL
  if [ -z "$(sql "$port" "$read_db" -c "SELECT 1 FROM pg_subscription WHERE subname = '$subscription'")" ]; then
    log "subscribing $read_db to $write_db"
    sql "$port" "$read_db" -c "CREATE SUBSCRIPTION \"$subscription\"
      CONNECTION 'host=$WRITE_DB_HOST_FROM_READ port=$WRITE_DB_PORT dbname=$write_db user=$REPLICATION_USER password=$REPLICATION_PASSWORD'
      PUBLICATION \"$PUBLICATION\" WITH (copy_data = true)"
  fi
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
