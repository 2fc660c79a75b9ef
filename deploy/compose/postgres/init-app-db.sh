#!/bin/sh
# First-start initialisation of a PostgreSQL server for one service, run by the postgres image from
# /docker-entrypoint-initdb.d (Compose) or by the StatefulSet's init step (Kubernetes), as the superuser.
# It does what deploy/local/infra.sh does natively: one login role per service (not a superuser), owning its
# database and creating its tables in the schema `public` (which the superuser owns), and nobody else may
# connect. The superuser stays for operators and the replication init step.
# Variables: APP_DB_USER, APP_DB_PASSWORD, APP_DB_NAME; POSTGRES_USER (the superuser, set by the image).
set -eu
: "${APP_DB_USER:?}" "${APP_DB_PASSWORD:?}" "${APP_DB_NAME:?}"

# psql's own variables (:'name', :"name") quote values, so passwords and names need no escaping here.
psql -v ON_ERROR_STOP=1 -X -q --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v app_user="$APP_DB_USER" -v app_password="$APP_DB_PASSWORD" -v app_db="$APP_DB_NAME" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'app_user', :'app_password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'app_user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app_db') \gexec
SELECT format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', :'app_db') \gexec
\connect :"app_db"
-- The role creates its tables in `public` but does not own it: a schema's owner may drop anything in it, the
-- superuser's replica of `events` included (deploy/compose/replication/subscriber.sql).
ALTER SCHEMA public OWNER TO CURRENT_USER;
GRANT USAGE, CREATE ON SCHEMA public TO :"app_user";
SQL
echo "init-app-db: role $APP_DB_USER owns database $APP_DB_NAME"
