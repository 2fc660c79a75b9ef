"""The read side's replication of the event log on a throwaway pair of servers: a slot that loses its WAL is
detected, and `resubscribe_events` brings the replica back complete and streaming.

The publisher keeps at most 1 MB of WAL for a slot, so a disabled subscription loses its slot after a few
segment switches and a checkpoint, the way a long outage of the read side does in production with
max_slot_wal_keep_size=1GB. The pair is set up as a user sets it up: the write side's migrations, then
deploy/local/replication.sh.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from devkit.polling import eventually
from read_service.projections.event_log.replication_admin import (
    ResubscribeError,
    replication_status,
    resubscribe_events,
)
from tests.support.private_postgres import PrivatePostgres

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
WRITE_DB, READ_DB, READ_ROLE = "cqrs_write", "cqrs_read", "cqrs_read"


class Pair:
    def __init__(self) -> None:
        # Segments of 16 MB and at most 1 MB kept for a slot: a few pg_switch_wal() and a checkpoint lose it.
        self.publisher = PrivatePostgres("wal_level=logical", "max_slot_wal_keep_size=1MB")
        self.subscriber = PrivatePostgres()
        self.read_url = ""

    def start(self) -> Pair:
        self.publisher.start()
        self.subscriber.start()
        self.publisher.sql("postgres", f"CREATE DATABASE {WRITE_DB}")
        self.read_url = self.subscriber.create_database(READ_DB, READ_ROLE, READ_ROLE)  # not a superuser
        # The write side's own settings (pytest-django has put the read side's in the environment).
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "write_service.settings",
            "WRITE_DATABASE_URL": self.write_url,
        }
        _run([sys.executable, "-m", "write_service", "migrate", "--no-input", "-v0"], env)
        self.replicate()
        return self

    def replicate(self) -> None:
        """deploy/local/replication.sh on the pair (again: it is safe to run any number of times)."""
        replication = {
            "WRITE_DB_PORT": str(self.publisher.port),
            "READ_DB_PORT": str(self.subscriber.port),
            "REPLICATION_PAIRS": f"{WRITE_DB}:{READ_DB}",
        }
        _run(["bash", str(REPO / "deploy/local/replication.sh")], {**os.environ, **replication})

    def stop(self) -> None:
        self.subscriber.destroy()
        self.publisher.destroy()

    @property
    def admin_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.subscriber.port}/{READ_DB}"

    @property
    def write_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.publisher.port}/{WRITE_DB}"

    def append(self, count: int) -> None:
        """`count` events of new accounts, committed on the write side."""
        self.publisher.sql(
            WRITE_DB,
            f"""
            INSERT INTO events (event_id, aggregate_type, aggregate_id, aggregate_version, event_type,
                                schema_version, data, occurred_at)
            SELECT gen_random_uuid(), 'account', gen_random_uuid(), 1, 'AccountOpened', 1,
                   '{{"owner": "o", "currency": "EUR"}}', now()
              FROM generate_series(1, {count})
            """,
        )

    def event_ids(self, server: PrivatePostgres, database: str) -> set[str]:
        return set(server.sql(database, "SELECT event_id FROM events").split())

    def replica_count(self) -> int:
        return int(self.subscriber.sql(READ_DB, "SELECT count(*) FROM events"))

    def slot_wal_status(self) -> str:
        return self.publisher.sql(WRITE_DB, "SELECT wal_status FROM pg_replication_slots")

    def lose_the_slot(self) -> None:
        """Writes, switches WAL segments and checkpoints until the disabled subscription's slot is lost."""
        for _ in range(20):
            self.publisher.sql(
                WRITE_DB,
                "CREATE TABLE IF NOT EXISTS filler (pad text)",
                "INSERT INTO filler SELECT md5(random()::text) FROM generate_series(1, 100)",
                "SELECT pg_switch_wal()",
                "CHECKPOINT",
            )
            if self.slot_wal_status() == "lost":
                return
        raise AssertionError(f"the slot was never lost: {self.slot_wal_status()}")

    def subscriber_log(self) -> str:
        return (self.subscriber.root / "log").read_text(errors="replace")


def _run(argv: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    started = Pair()
    try:
        yield started.start()
    finally:
        started.stop()


def test_a_lost_slot_is_detected_and_resubscribing_restores_a_complete_replica(pair: Pair) -> None:
    pair.append(50)
    eventually(lambda: pair.replica_count() == 50, timeout=30)
    healthy = replication_status(dsn=pair.read_url, publisher_dsn=pair.write_url)
    assert healthy.healthy, healthy.problems
    assert (healthy.subscription, healthy.worker_running, healthy.slot_wal_status) == (
        f"{READ_DB}_events",
        True,
        "reserved",
    )

    # A long outage of the read side: the subscription stops, the write side goes on, WAL is recycled.
    pair.subscriber.sql(READ_DB, f"ALTER SUBSCRIPTION {READ_DB}_events DISABLE")
    pair.append(30)
    pair.lose_the_slot()
    pair.subscriber.sql(READ_DB, f"ALTER SUBSCRIPTION {READ_DB}_events ENABLE")
    # The apply worker starts, is refused the slot, and retries in vain.
    eventually(lambda: "This slot has been invalidated" in pair.subscriber_log(), timeout=30)
    broken = replication_status(dsn=pair.read_url, publisher_dsn=pair.write_url)
    assert broken.slot_wal_status == "lost" and not broken.healthy
    assert any("lost its WAL" in problem for problem in broken.problems), broken.problems
    assert pair.replica_count() == 50

    result = subprocess.run(
        [sys.executable, "-m", "read_service", "resubscribe_events"],
        env={
            **os.environ,
            "READ_DATABASE_URL": pair.read_url,
            "REPLICATION_ADMIN_DATABASE_URL": pair.admin_url,
            "REPLICATION_PUBLISHER_CONNINFO": "",
            "LOG_FORMAT": "json",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"resubscribed {READ_DB}_events: 80 event(s) copied" in result.stdout
    assert pair.event_ids(pair.subscriber, READ_DB) == pair.event_ids(pair.publisher, WRITE_DB)
    pair.append(10)  # and it streams again
    eventually(lambda: pair.replica_count() == 90, timeout=30)
    restored = replication_status(dsn=pair.read_url, publisher_dsn=pair.write_url)
    assert restored.healthy and restored.slot_wal_status == "reserved", restored.problems
    assert pair.subscriber.sql(READ_DB, "SELECT substream FROM pg_subscription") == "f"


def test_status_names_a_disabled_or_missing_subscription(pair: Pair) -> None:
    pair.subscriber.sql(READ_DB, f"ALTER SUBSCRIPTION {READ_DB}_events DISABLE")
    try:
        status = replication_status(dsn=pair.read_url)
        assert status.problems == ("subscription disabled",) and status.slot_wal_status is None
    finally:
        pair.subscriber.sql(READ_DB, f"ALTER SUBSCRIPTION {READ_DB}_events ENABLE")
    missing = replication_status(dsn=pair.read_url, subscription="nope")
    assert (missing.exists, missing.problems) == (False, ("subscription nope does not exist",))


def test_resubscribing_needs_a_superuser(pair: Pair) -> None:
    with pytest.raises(ResubscribeError, match="must be a superuser"):
        resubscribe_events(admin_dsn=pair.read_url)
    assert pair.subscriber.sql(READ_DB, "SELECT count(*) FROM pg_subscription WHERE subenabled") == "1"


def test_setting_up_again_pins_streaming_off_on_the_subscription(pair: Pair) -> None:
    """The projector relies on whole transactions applied in commit order (replica_seq): a subscription
    streaming transactions in progress, as someone may have set it, is set back."""
    pair.subscriber.sql(READ_DB, f"ALTER SUBSCRIPTION {READ_DB}_events SET (streaming = on)")

    pair.replicate()

    assert (
        pair.subscriber.sql(READ_DB, "SELECT subname, substream FROM pg_subscription")
        == f"{READ_DB}_events|f"
    )


def test_the_read_role_cannot_drop_the_replica_yet_migrates_and_reads_it(pair: Pair) -> None:
    """Earlier releases let the read role own `public`, where a schema's owner may drop any table: setting up
    again takes the schema back without copying the replica again, and the read side works as before."""
    pair.subscriber.sql(
        READ_DB, f'ALTER SCHEMA public OWNER TO "{READ_ROLE}"'
    )  # as an earlier release left it
    before = pair.replica_count()

    pair.replicate()

    for statement in (
        "DROP TABLE events",
        "ALTER TABLE events RENAME TO gone",
        "ALTER TABLE events DISABLE TRIGGER ALL",
        "DROP SCHEMA public CASCADE",
        "ALTER SCHEMA public RENAME TO gone",
    ):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            _as_read_role(pair, statement)
    # The read service's own migrations still run as its role, and it reads the replica.
    env = {**os.environ, "READ_DATABASE_URL": pair.read_url}
    _run([sys.executable, "-m", "read_service", "migrate", "--no-input", "-v0"], env)
    assert _as_read_role(pair, "SELECT count(*) FROM account_view") == [(0,)]
    assert _as_read_role(pair, "SELECT count(*) FROM events") == [(before,)]  # nothing copied again
    pair.append(5)
    eventually(lambda: pair.replica_count() == before + 5, timeout=30)
    assert replication_status(dsn=pair.read_url, publisher_dsn=pair.write_url).healthy


def _as_read_role(pair: Pair, statement: str) -> list[tuple]:
    connection = psycopg2.connect(pair.read_url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()
