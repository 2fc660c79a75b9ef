-- The write database's side of the logical replication of `events` (the read side's fallback path and its
-- copy of the log, docs/decisions/0004): a login role that may only read `events`, and the publication.
-- The one definition, run as the PostgreSQL superuser by deploy/local/replication.sh (natively) and by
-- replication-init.sh (Compose, Kubernetes). Safe to run again: every step checks first.
--
-- psql variables (psql -v): repl_user, repl_password, publication. :'x' and :"x" quote every value.
\set ON_ERROR_STOP on
SELECT format('CREATE ROLE %I LOGIN REPLICATION PASSWORD %L', :'repl_user', :'repl_password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'repl_user') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'repl_user') \gexec
GRANT SELECT ON public.events TO :"repl_user";
-- Inserts only (events are never updated nor deleted), of the columns the replica has, named: a column
-- added to events later reaches no subscriber until its replica has it too.
SELECT format('CREATE PUBLICATION %I FOR TABLE public.events (position, event_id, aggregate_type, aggregate_id, '
              'aggregate_version, event_type, schema_version, data, occurred_at, correlation_id, causation_id) '
              'WITH (publish = %L)', :'publication', 'insert')
 WHERE NOT EXISTS (SELECT FROM pg_publication WHERE pubname = :'publication') \gexec
