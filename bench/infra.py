"""The databases and vhost a benchmark runs on: created with deploy/local/infra.sh and replication.sh,
migrated, and emptied before a run.

By default a run owns `cqrs_write_bench` / `cqrs_read_bench` (their own replication pair) and the vhost
`cqrs_bench`, so it never empties what `make run` or `make test` use. With `--use-environment` the harness
takes the URLs from the environment instead (as the end-to-end tier does) and provisions nothing.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg2

from cqrs_common.messaging import DEAD_LETTER_QUEUE, Consumer
from devkit.processes import PYTHON, REPO
from devkit.replication import replica_reset, subscription_name, superuser_sql
from devkit.system_processes import Backends

WRITE_DB_PORT = int(os.environ.get("WRITE_DB_PORT", "5433"))
READ_DB_PORT = int(os.environ.get("READ_DB_PORT", "5434"))
# Django's own tables keep their rows; only the ledger's and the projection's are emptied.
_KEPT_TABLES = ("django_%", "auth_%")


@dataclass(frozen=True)
class Databases(Backends):
    """What a benchmark runs on (devkit's Backends: both databases and each side's broker URL), and the
    names infra.sh and replication.sh are given for them."""

    @classmethod
    def dedicated(cls, name: str) -> Databases:
        return cls(
            write_database_url=f"postgres://cqrs_write:cqrs_write@127.0.0.1:{WRITE_DB_PORT}/cqrs_write_{name}",
            read_database_url=f"postgres://cqrs_read:cqrs_read@127.0.0.1:{READ_DB_PORT}/cqrs_read_{name}",
            write_broker_url=f"amqp://write-service:write-service@127.0.0.1:5672/cqrs_{name}",
            read_broker_url=f"amqp://read-service:read-service@127.0.0.1:5672/cqrs_{name}",
        )

    @classmethod
    def from_environment(cls) -> Databases:
        """The variables of the Makefile's test-e2e target."""
        return cls(
            write_database_url=os.environ["WRITE_DATABASE_URL"],
            read_database_url=os.environ["READ_DATABASE_URL"],
            write_broker_url=os.environ["TEST_WRITE_RABBITMQ_URL"],
            read_broker_url=os.environ["TEST_READ_RABBITMQ_URL"],
        )

    @property
    def write_database(self) -> str:
        return _database_name(self.write_database_url)

    @property
    def read_database(self) -> str:
        return _database_name(self.read_database_url)

    @property
    def write_port(self) -> int:
        return urlsplit(self.write_database_url).port or 5432

    @property
    def read_port(self) -> int:
        return urlsplit(self.read_database_url).port or 5432

    @property
    def vhost(self) -> str:
        return _database_name(self.write_broker_url)


def provision(databases: Databases) -> None:
    """Creates (idempotently) the databases and the vhost with infra.sh."""
    _script(
        "deploy/local/infra.sh",
        WRITE_DATABASES=databases.write_database,
        READ_DATABASES=databases.read_database,
        RABBITMQ_VHOSTS=databases.vhost,
    )


def migrate(databases: Databases) -> None:
    """Both services' migrations, in parallel (the replication pair is made by `reset`)."""
    jobs = (
        ("write_service", {"WRITE_DATABASE_URL": databases.write_database_url}),
        ("read_service", {"READ_DATABASE_URL": databases.read_database_url}),
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        for done in [pool.submit(_migrate_one, package, env) for package, env in jobs]:
            done.result()


def reset(databases: Databases) -> str | None:
    """Empties the ledger, the read models, the replica and both queues, so every run starts from nothing.
    Returns None when the replication stream runs, else why not (the projector's replication path reads
    what it brings, so the run goes on without that path and says so).

    The publication carries inserts only, so rows of emptied write tables stay in the replica, where the
    projector's replication path would apply them to the fresh read models: the replica is emptied too, as
    the tests do it (devkit/replication.py). Identities are not restarted: no position is seen twice.
    """
    for url in (databases.write_database_url, databases.read_database_url):
        _truncate_own_tables(url)
    _script(  # the subscription, if this pair has none yet (idempotent)
        "deploy/local/replication.sh",
        REPLICATION_PAIRS=f"{databases.write_database}:{databases.read_database}",
        WRITE_DB_PORT=str(databases.write_port),
        READ_DB_PORT=str(databases.read_port),
    )
    try:
        replica_reset(databases.read_database_url)
        problem = None
    except AssertionError as exc:  # e.g. no logical replication worker free on a crowded server
        problem = str(exc)
    with Consumer(databases.read_broker_url, connection_name="bench-reset") as consumer:
        consumer.purge_queues()
        consumer.purge(DEAD_LETTER_QUEUE)
    return problem


def _truncate_own_tables(url: str) -> None:
    """TRUNCATE of every table the service role owns (the replica table belongs to the superuser)."""
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'"
            " AND tableowner = current_user AND tablename NOT LIKE %s AND tablename NOT LIKE %s",
            _KEPT_TABLES,
        )
        tables = [row[0] for row in cursor.fetchall()]
        if tables:
            cursor.execute(f"TRUNCATE {', '.join(tables)}")
    connection.close()


def _migrate_one(package: str, env: dict[str, str]) -> None:
    subprocess.run(
        [PYTHON, "-m", package, "migrate", "--no-input", "-v", "0"],
        env={**os.environ, **env},
        cwd=REPO,
        check=True,
        timeout=300,
    )


def _script(path: str, **env: str) -> None:
    # Output is kept out of the progress bar and shown only when the script fails.
    result = subprocess.run(
        ["bash", path], env={**os.environ, **env}, cwd=REPO, capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        raise RuntimeError(f"{path} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def _database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


@contextlib.contextmanager
def other_subscriptions_paused(databases: Databases) -> Iterator[list[str]]:
    """Disables, for the run, every other enabled subscription of the read cluster that nothing uses (no
    client connected to its database: not `make run`'s while it runs, not the tests' while they run), and
    enables them again after. Each keeps its slot on the write cluster, so it resumes where it was; while
    enabled, its walsender decodes all of the write cluster's WAL, the run's load included, for a read model
    nobody is looking at. Yields the subscriptions it paused ("database.subscription")."""
    own = subscription_name(databases.read_database_url)
    listed = superuser_sql(
        databases.read_port,
        "postgres",
        "SELECT d.datname || ' ' || s.subname FROM pg_subscription s"
        " JOIN pg_database d ON d.oid = s.subdbid WHERE s.subenabled AND NOT EXISTS ("
        "  SELECT FROM pg_stat_activity a WHERE a.datid = s.subdbid AND a.backend_type = 'client backend'"
        ") ORDER BY 1",
    )
    others = [line.split(" ", 1) for line in listed.splitlines() if line and not line.endswith(f" {own}")]
    paused = []
    try:
        for database, subscription in others:
            superuser_sql(databases.read_port, database, f'ALTER SUBSCRIPTION "{subscription}" DISABLE')
            paused.append((database, subscription))
        yield [f"{database}.{subscription}" for database, subscription in paused]
    finally:
        for database, subscription in paused:
            superuser_sql(databases.read_port, database, f'ALTER SUBSCRIPTION "{subscription}" ENABLE')
