"""The PostgreSQL pieces of Compose and Kubernetes, run for real on throwaway servers: they start with the
containers' settings, init-app-db.sh creates each service's role, the real migrations run as that role, and
replication-init.sh wires the read database to the write database's events."""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from typing import Any

import pytest
from packaging_support import REPO, PrivatePostgres, run

from devkit.processes import DEVELOPMENT_SECRETS_ALLOWED

INIT_APP_DB = REPO / "deploy" / "compose" / "postgres" / "init-app-db.sh"
REPLICATION_INIT = REPO / "deploy" / "compose" / "replication" / "replication-init.sh"

pytestmark = pytest.mark.slow


def env_example() -> dict[str, str]:
    lines = (REPO / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^\w+=", line))


def server_settings(compose: dict[str, Any], service: str) -> list[str]:
    command = compose["services"][service]["command"]
    return [command[i + 1] for i, arg in enumerate(command) if arg == "-c"]


def script(path: Any, server: PrivatePostgres | None = None, **env: str) -> None:
    base = {"PATH": os.environ["PATH"], "PGUSER": "postgres", "POSTGRES_USER": "postgres"}
    if server is not None:
        base |= {"PGHOST": "127.0.0.1", "PGPORT": str(server.port)}
    result = run(["sh", str(path)], env=base | env)
    assert result.returncode == 0, result.stderr


def migrate(side: str, url_variable: str, url: str) -> None:
    # .env.example's passwords are development ones, which Compose allows (ALLOW_DEVELOPMENT_SECRETS).
    env = {**os.environ, **DEVELOPMENT_SECRETS_ALLOWED, url_variable: url, "LOG_FORMAT": "json"}
    result = run([sys.executable, "-m", side, "migrate", "--no-input", "-v0"], env=env)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def servers(compose: dict[str, Any], private_postgres) -> dict[str, PrivatePostgres]:  # type: ignore[no-untyped-def]
    """write-db and read-db as Compose configures them, initialised by init-app-db.sh (twice: idempotent)."""
    example = env_example()
    started = {}
    for service, user, password in (
        ("write-db", "cqrs_write", example["WRITE_DB_PASSWORD"]),
        ("read-db", "cqrs_read", example["READ_DB_PASSWORD"]),
    ):
        server = private_postgres(*server_settings(compose, service))
        for _ in range(2):
            script(INIT_APP_DB, server, APP_DB_USER=user, APP_DB_PASSWORD=password, APP_DB_NAME=user)
        started[service] = server
    return started


def test_servers_accept_the_container_settings(
    servers: dict[str, PrivatePostgres], compose: dict[str, Any]
) -> None:
    for service, server in servers.items():
        for setting in server_settings(compose, service):
            name, value = setting.split("=", 1)
            shown = server.psql("postgres", f"SHOW {name}")
            assert shown == value, (service, name, shown)


def test_each_service_gets_its_own_unprivileged_role_and_database(
    servers: dict[str, PrivatePostgres],
) -> None:
    for service, name in (("write-db", "cqrs_write"), ("read-db", "cqrs_read")):
        server = servers[service]
        assert server.psql("postgres", f"SELECT rolsuper FROM pg_roles WHERE rolname = '{name}'") == "f"
        owner = server.psql(
            "postgres", f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{name}'"
        )
        assert owner == name
        server.psql("postgres", "CREATE ROLE outsider LOGIN")
        assert (
            server.psql("postgres", f"SELECT has_database_privilege('outsider', '{name}', 'CONNECT')") == "f"
        )
        # It creates its tables in `public` but does not own the schema (whose owner could drop any table).
        assert (
            server.psql(name, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'")
            == "postgres"
        )
        assert server.psql(name, f"SELECT has_schema_privilege('{name}', 'public', 'CREATE')") == "t"


def test_migrations_then_replication_carry_events_to_the_read_database(
    servers: dict[str, PrivatePostgres],
) -> None:
    example = env_example()
    write, read = servers["write-db"], servers["read-db"]
    # The migrate service: both sides' migrations, as the services' own roles.
    migrate(
        "write_service",
        "WRITE_DATABASE_URL",
        f"postgres://cqrs_write:{example['WRITE_DB_PASSWORD']}@127.0.0.1:{write.port}/cqrs_write",
    )
    migrate(
        "read_service",
        "READ_DATABASE_URL",
        f"postgres://cqrs_read:{example['READ_DB_PASSWORD']}@127.0.0.1:{read.port}/cqrs_read",
    )
    # The replication-init service, twice: it must be safe to run on every `docker compose up`.
    for _ in range(2):
        script(REPLICATION_INIT, **replication_env(servers))

    event_id = event_written(write)
    event_replicated(read, event_id)

    assert read.psql("cqrs_read", "SELECT count(*) FROM pg_subscription") == "1"
    # Whole transactions, applied in commit order: what replica_seq and the projector rely on.
    assert read.psql("cqrs_read", "SELECT substream FROM pg_subscription") == "f"
    # The subscriber-local commit-order number the projector's fallback scans by, filled as rows arrive.
    assert read.psql("cqrs_read", f"SELECT replica_seq > 0 FROM events WHERE event_id = '{event_id}'") == "t"
    # The read role may read the replica but not write it: only the subscription writes there.
    assert read.psql("cqrs_read", "SELECT has_table_privilege('cqrs_read', 'events', 'SELECT')") == "t"
    assert read.psql("cqrs_read", "SELECT has_table_privilege('cqrs_read', 'events', 'INSERT')") == "f"


def test_setting_up_again_pins_streaming_off_without_a_new_copy(servers: dict[str, PrivatePostgres]) -> None:
    """A subscription streaming transactions in progress (as an operator may have set it) is set back, and
    the stream goes on as it was."""
    write, read = servers["write-db"], servers["read-db"]
    read.psql("cqrs_read", "ALTER SUBSCRIPTION cqrs_read_events SET (streaming = on)")
    before = read.psql("cqrs_read", "SELECT count(*), max(replica_seq) FROM events")

    script(REPLICATION_INIT, **replication_env(servers))

    assert read.psql("cqrs_read", "SELECT substream FROM pg_subscription") == "f"
    assert read.psql("cqrs_read", "SELECT count(*), max(replica_seq) FROM events") == before  # nothing copied
    event_replicated(read, event_written(write))


def test_the_read_role_cannot_drop_the_replica_once_set_up_again(servers: dict[str, PrivatePostgres]) -> None:
    """Earlier releases let the read role own `public`, and a schema's owner may drop any table in it: the
    replica too. Setting up again takes the schema back, and the stream goes on without a new copy."""
    write, read = servers["write-db"], servers["read-db"]
    read.psql("cqrs_read", "ALTER SCHEMA public OWNER TO cqrs_read")  # as an earlier release left it
    before = read.psql("cqrs_read", "SELECT count(*), max(replica_seq) FROM events")

    script(REPLICATION_INIT, **replication_env(servers))

    public_owner = "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'"
    assert read.psql("cqrs_read", public_owner) == "postgres"
    for statement in ("DROP TABLE events", "ALTER TABLE events RENAME TO gone", "DROP SCHEMA public CASCADE"):
        refused = read_role_runs(read, statement)
        assert refused.returncode != 0 and "must be owner" in refused.stderr, (statement, refused.stderr)
    # The role still creates and drops tables of its own there, as its migrations do.
    assert read_role_runs(read, "CREATE TABLE own (id int); DROP TABLE own").returncode == 0
    assert read.psql("cqrs_read", "SELECT count(*), max(replica_seq) FROM events") == before  # nothing copied
    event_replicated(read, event_written(write))


def read_role_runs(read: PrivatePostgres, statement: str) -> Any:
    """`statement` run with the read role's privileges (SET ROLE), in one transaction."""
    psql = ["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(read.port)]
    return run([*psql, "-U", "postgres", "-d", "cqrs_read", "-1", "-c", f"SET ROLE cqrs_read; {statement}"])


def replication_env(servers: dict[str, PrivatePostgres]) -> dict[str, str]:
    """The replication-init service's environment, aimed at the throwaway servers."""
    return {
        "WRITE_DB_HOST": "127.0.0.1",
        "WRITE_DB_PORT": str(servers["write-db"].port),
        "WRITE_DB_NAME": "cqrs_write",
        "READ_DB_HOST": "127.0.0.1",
        "READ_DB_PORT": str(servers["read-db"].port),
        "READ_DB_NAME": "cqrs_read",
        "READ_DB_USER": "cqrs_read",
        "REPLICATION_USER": "cqrs_replicator",
        "REPLICATION_PASSWORD": env_example()["REPLICATION_PASSWORD"],
    }


def event_written(write: PrivatePostgres) -> uuid.UUID:
    event_id, aggregate_id = uuid.uuid4(), uuid.uuid4()
    write.psql(
        "cqrs_write",
        "SET ROLE cqrs_write; INSERT INTO events (event_id, aggregate_type, aggregate_id, aggregate_version, "
        "event_type, schema_version, data, occurred_at) VALUES "
        f"('{event_id}', 'account', '{aggregate_id}', 1, 'AccountOpened', 1, "
        """'{"owner": "alice", "currency": "EUR"}', now())""",
    )
    return event_id


def event_replicated(read: PrivatePostgres, event_id: uuid.UUID) -> None:
    deadline = time.monotonic() + 20
    while read.psql("cqrs_read", f"SELECT count(*) FROM events WHERE event_id = '{event_id}'") != "1":
        assert time.monotonic() < deadline, "the event never reached the read database"
        time.sleep(0.1)


def test_replication_init_refuses_to_run_before_the_migrations(servers: dict[str, PrivatePostgres]) -> None:
    write, read = servers["write-db"], servers["read-db"]
    write.psql("postgres", "CREATE DATABASE not_migrated")
    env = {
        "PATH": os.environ["PATH"],
        "PGUSER": "postgres",
        "WRITE_DB_HOST": "127.0.0.1",
        "WRITE_DB_PORT": str(write.port),
        "WRITE_DB_NAME": "not_migrated",
        "READ_DB_HOST": "127.0.0.1",
        "READ_DB_PORT": str(read.port),
        "READ_DB_NAME": "cqrs_read",
        "READ_DB_USER": "cqrs_read",
        "REPLICATION_USER": "cqrs_replicator",
        "REPLICATION_PASSWORD": "x",
    }
    result = run(["sh", str(REPLICATION_INIT)], env=env)
    assert result.returncode == 1
    assert "the migrations must run first" in result.stderr
