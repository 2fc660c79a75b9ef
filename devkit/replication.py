"""The logical replication of `events` into a read database, as tests that empty the databases need it.

Emptying the write database does not empty the replica: the publication carries inserts only. Stale replica
rows would then be "filled" into a fresh read model by the projector's fallback. So a test that empties the
read database also empties the replica (as the superuser: the read role may only SELECT it), once the
subscription has applied everything written before (else an old insert still on its way would land in the
emptied replica). The write database's positions go on across its emptying (`event_positions_kept`), so a
new event never collides with a row another replica still holds. A subscription that is not streaming
anyway (say, halted by such a collision) is dropped with its slot, so no WAL of earlier tests is left to
replay, and created again without an initial copy; PostgreSQL 15 starts its worker within
wal_retrieve_retry_interval (5 s).

The publisher is found from the subscription itself (its connection string, which only a superuser may
read). Needs root: the superuser is reached as the `postgres` OS user, as infra.sh does.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

import psycopg2

from devkit.polling import eventually, poll

READY_TIMEOUT_SECONDS = 60


def database_of(url: str) -> tuple[str, int]:
    """(database name, port) of a postgres:// URL."""
    parsed = urlparse(url)
    return parsed.path.lstrip("/"), parsed.port or 5432


def superuser_sql(port: int, database: str, *statements: str) -> str:
    """Runs each statement in its own transaction as the superuser; returns the last one's output."""
    command = ["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1"]
    command += ["-p", str(port), "-d", database]
    for statement in statements:
        command += ["-c", statement]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd="/")
    if result.returncode != 0:
        raise RuntimeError(f"psql failed on {database}: {result.stderr.strip()}")
    return result.stdout.strip()


@contextlib.contextmanager
def event_positions_kept(write_database_url: str) -> Iterator[None]:
    """Emptying the write database (Django's `flush`) restarts its sequences. Positions handed out again would
    collide with rows that the other read databases' replicas still hold (each replica is emptied only when
    its own tests start), halting their subscriptions. So the position sequence goes on where it was, and
    the relay's mark with it: no position up to there can appear any more, and a relay would otherwise
    have to look through all of them as positions missing below its first event."""
    connection = psycopg2.connect(write_database_url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT pg_get_serial_sequence('events', 'position')")
            sequence = cursor.fetchone()[0]
            cursor.execute(f"SELECT last_value, is_called FROM {sequence}")
            last_value, is_called = cursor.fetchone()
        yield
        with connection, connection.cursor() as cursor:
            cursor.execute(
                f"SELECT setval(%s, greatest(%s, (SELECT last_value FROM {sequence})), %s)",
                (sequence, last_value, is_called),
            )
            if is_called:
                cursor.execute(
                    "UPDATE outbox_progress SET mark = %s"
                    " WHERE mark < %s AND NOT EXISTS (SELECT FROM events)",
                    (last_value, last_value),
                )
    finally:
        connection.close()


def subscription_name(read_database_url: str) -> str:
    return f"{database_of(read_database_url)[0]}_events"


@dataclass(frozen=True)
class Replication:
    read_db: str
    read_port: int
    subscription: str
    conninfo: str  # how the subscription connects to the publisher
    publications: str  # as CREATE SUBSCRIPTION takes them
    write_db: str
    write_port: int


def replication_of(read_database_url: str) -> Replication:
    read_db, read_port = database_of(read_database_url)
    subscription = subscription_name(read_database_url)
    found = superuser_sql(
        read_port,
        read_db,
        "SELECT subconninfo, (SELECT string_agg(quote_ident(p), ', ') FROM unnest(subpublications) AS p)"
        f" FROM pg_subscription WHERE subname = '{subscription}'",
    )
    if not found:
        raise AssertionError(
            f"no subscription {subscription}: run deploy/local/replication.sh (make migrate-test)"
        )
    conninfo, publications = found.split("|")
    options = dict(option.split("=", 1) for option in conninfo.split())
    return Replication(
        read_db,
        read_port,
        subscription,
        conninfo,
        publications,
        options["dbname"],
        int(options.get("port", 5432)),
    )


def replica_reset(read_database_url: str) -> None:
    """An empty replica, followed by a streaming subscription that has nothing older left to bring."""
    replication = replication_of(read_database_url)
    if not _caught_up(replication):
        _resubscribe(replication)
    superuser_sql(replication.read_port, replication.read_db, "TRUNCATE public.events")


def _caught_up(replication: Replication, timeout: float = 5.0) -> bool:
    """Whether the subscription streams and has confirmed every change written on the publisher so far."""
    if not _streaming(replication):
        return False
    now = superuser_sql(replication.write_port, replication.write_db, "SELECT pg_current_wal_lsn()")
    query = f"""SELECT confirmed_flush_lsn >= '{now}' FROM pg_replication_slots
                 WHERE slot_name = '{replication.subscription}' AND database = current_database()"""
    return bool(
        poll(lambda: superuser_sql(replication.write_port, replication.write_db, query) == "t", timeout)
    )


def _streaming(replication: Replication) -> bool:
    """The initial copy done and the subscription's apply worker running."""
    query = f"""
        SELECT bool_and(r.srsubstate = 'r') AND bool_and(st.pid IS NOT NULL)
          FROM pg_subscription s
          JOIN pg_subscription_rel r ON r.srsubid = s.oid
          JOIN pg_stat_subscription st ON st.subid = s.oid AND st.relid IS NULL
         WHERE s.subname = '{replication.subscription}' AND s.subenabled
    """
    return superuser_sql(replication.read_port, replication.read_db, query) == "t"


def _resubscribe(replication: Replication) -> None:
    """The subscription dropped with its slot, then created again as subscriber.sql creates it, but without
    the initial copy: the replica is emptied anyway (and copying needs a worker slot of its own)."""
    read_port, read_db, subscription = replication.read_port, replication.read_db, replication.subscription
    # Detached from its slot first, so the drop works even when the slot is gone or the publisher fails.
    superuser_sql(
        read_port,
        read_db,
        f'ALTER SUBSCRIPTION "{subscription}" DISABLE',
        f'ALTER SUBSCRIPTION "{subscription}" SET (slot_name = NONE)',
        f'DROP SUBSCRIPTION "{subscription}"',
    )
    _drop_slot(replication.write_port, replication.write_db, subscription)
    superuser_sql(
        read_port,
        read_db,
        "TRUNCATE public.events",
        f"CREATE SUBSCRIPTION \"{subscription}\" CONNECTION '{replication.conninfo}'"
        f" PUBLICATION {replication.publications} WITH (copy_data = false, streaming = off)",
    )
    wait_until_streaming(replication)


def _drop_slot(port: int, database: str, slot: str) -> None:
    """Drops the slot once its sender is gone (a disabled subscriber's connection closes within moments)."""

    def dropped() -> bool:
        state = superuser_sql(
            port, database, f"SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'"
        )
        if state == "f":
            try:
                superuser_sql(port, database, f"SELECT pg_drop_replication_slot('{slot}')")
                return True
            except RuntimeError:
                return False  # taken again in between: retry
        return not state

    eventually(dropped, READY_TIMEOUT_SECONDS, 0.1, what=f"replication slot {slot} to be out of use")


def wait_until_streaming(replication: Replication, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    eventually(
        lambda: _streaming(replication),
        timeout,
        0.1,
        what=f"subscription {replication.subscription} to stream",
    )
