-- The subscribing database's side of the logical replication of `events`: the read database (the replica the
-- projector's fallback, verify and rebuild read) or the optional event store. The one definition, run as the
-- PostgreSQL superuser (PostgreSQL 15 lets only a superuser create a subscription) by
-- deploy/local/replication.sh and by replication-init.sh, after publisher.sql. Safe to run again, and it
-- brings an install made by an earlier release to this state without copying anything again.
--
-- psql variables (psql -v): read_user (the service role that may read the replica), publication,
-- subscription, publisher_conninfo (how this server reaches the write database).
\set ON_ERROR_STOP on

-- Logical replication matches tables by schema-qualified name, so the replica must be `public.events`, as on
-- the publisher. What keeps the service role from dropping or altering it is ownership: the superuser owns
-- both the table and the schema `public` (a schema's owner may drop anything in it), and the role only gets
-- to create its own tables there (docs/decisions/0004). An earlier release gave the role the schema:
-- taking it back changes no table, so the subscription goes on as it was.
ALTER SCHEMA public OWNER TO CURRENT_USER;
GRANT USAGE, CREATE ON SCHEMA public TO :"read_user";

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
-- Subscriber-local, never published: filled by its default as the subscription applies each row, and the
-- subscription applies transactions in the publisher's COMMIT order, so replica_seq follows commit order
-- (positions come from a sequence and do not). The projector's fallback scans the replica in this order.
ALTER TABLE public.events ADD COLUMN IF NOT EXISTS replica_seq bigint GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX IF NOT EXISTS events_replica_seq_idx ON public.events (replica_seq);
-- Only the subscription writes the replica: a row written by anyone else would conflict and halt the stream.
ALTER TABLE public.events OWNER TO CURRENT_USER;
REVOKE ALL ON public.events FROM PUBLIC;
GRANT SELECT ON public.events TO :"read_user";

-- streaming = off: a transaction is applied only once it has committed on the publisher, whole, and
-- transactions one after another in commit order, which replica_seq (and so the fallback's cursor) relies on.
-- Pinned rather than left to the default, and set again on a subscription that exists already.
SELECT format('CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION %I WITH (copy_data = true, streaming = off)',
              :'subscription', :'publisher_conninfo', :'publication')
 WHERE NOT EXISTS (SELECT FROM pg_subscription WHERE subname = :'subscription'
                      AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())) \gexec
SELECT format('ALTER SUBSCRIPTION %I SET (streaming = off)', :'subscription')
  FROM pg_subscription
 WHERE subname = :'subscription' AND substream <> 'f'
   AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \gexec
