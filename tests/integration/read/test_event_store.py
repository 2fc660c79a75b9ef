"""The optional event store: a third PostgreSQL (a throwaway server here) subscribed to the test write
database's publication by deploy/local/replication.sh (EVENT_STORE_PAIRS), as the read side's log for
verify_read_models and rebuild_read_models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from django.db import connection

from cqrs_common.events import EventEnvelope
from devkit.polling import eventually
from devkit.processes import REPO
from devkit.replication import Replication, replication_of, superuser_sql
from read_service.projections.rebuild import RebuildRefused, read_models_rebuild
from read_service.projections.verify import read_models_verify
from tests.integration.read.replica_log import (  # noqa: F401
    COLUMNS,
    LoggedAccount,
    ReplicaLog,
    ledger,
    mixed,
    project,
    read_models_clear,
    replica_log_fixture,
)
from tests.integration.read.test_rebuild_read_models import _models
from tests.support.private_postgres import PrivatePostgres

STORE_ROLE = "cqrs_events"


class EventStore:
    def __init__(self, server: PrivatePostgres, database: str, url: str, publisher: Replication) -> None:
        self.server, self.database, self.url = server, database, url
        self.write_db, self.write_port = publisher.write_db, publisher.write_port

    def count(self) -> int:
        return int(self.server.sql(self.database, "SELECT count(*) FROM events"))

    def numbered(self, events: list[EventEnvelope]) -> list[EventEnvelope]:
        """The events with positions handed out by the write database's own sequence (what it holds from
        earlier runs stays there, so positions of a fixed range would collide)."""
        positions = superuser_sql(
            self.write_port,
            self.write_db,
            "SELECT string_agg(nextval(pg_get_serial_sequence('events', 'position'))::text, ' ') "
            f"FROM generate_series(1, {len(events)})",
        )
        return [replace(e, position=int(p)) for e, p in zip(events, positions.split(), strict=True)]

    def publish(self, events: list[EventEnvelope]) -> None:
        """Commits events into the write database's event store table, and waits until the subscription has
        brought them here. (A relay started on that database later would publish them: the write tiers
        that start relays empty `events` first.)"""
        before = self.count()
        values = ",\n".join(
            "({}, '{}', '{}', '{}', {}, '{}', {}, $j${}$j$, '{}', {}, NULL)".format(
                e.position,
                e.event_id,
                e.aggregate_type,
                e.aggregate_id,
                e.aggregate_version,
                e.type,
                e.schema_version,
                _json(e.data),
                e.occurred_at.isoformat(),
                f"'{e.correlation_id}'" if e.correlation_id else "NULL",
            )
            for e in events
        )
        superuser_sql(self.write_port, self.write_db, f"INSERT INTO events ({COLUMNS}) VALUES {values}")
        eventually(lambda: self.count() >= before + len(events), timeout=30, what="the event store's events")


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data)


def _read_database_url() -> str:
    database = connection.settings_dict
    return (
        f"postgres://{database['USER']}:{database['PASSWORD']}@{database['HOST'] or '127.0.0.1'}:"
        f"{database['PORT'] or 5432}/{database['NAME']}"
    )


@pytest.fixture
def event_store(replica_log: ReplicaLog) -> Iterator[EventStore]:
    publisher = replication_of(_read_database_url())
    # Named after the write database: runs on different write databases never share a slot name.
    name = f"cqrs_events_{publisher.write_db.removeprefix('cqrs_write_')}"
    subscription = f"{name}_events"
    # A slot left by a run that died before its teardown would refuse the subscription.
    superuser_sql(
        publisher.write_port,
        publisher.write_db,
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
        f"WHERE slot_name = '{subscription}' AND NOT active",
    )
    server = PrivatePostgres("wal_retrieve_retry_interval=200ms").start()
    try:
        url = server.create_database(name, STORE_ROLE, STORE_ROLE)
        subprocess.run(
            ["bash", str(REPO / "deploy/local/replication.sh")],
            env={
                **os.environ,
                "REPLICATION_PAIRS": "",
                "EVENT_STORE_PAIRS": f"{publisher.write_db}:{name}",
                "WRITE_DB_PORT": str(publisher.write_port),
                "EVENT_STORE_PORT": str(server.port),
                "EVENT_STORE_USER": STORE_ROLE,
            },
            check=True,
            capture_output=True,
            timeout=120,
            cwd=REPO,
        )
        # The initial copy brings what the write database holds already (other tests' events): once it is
        # done, the store starts empty for this test.
        copied = "SELECT string_agg(srsubstate::text, '') FROM pg_subscription_rel"
        eventually(
            lambda: server.sql(name, copied) == "r",
            timeout=60,
            interval=0.1,
            what="the event store's initial copy",
        )
        server.sql(name, "TRUNCATE events")
        yield EventStore(server, name, url, publisher)
    finally:
        # Dropping the subscription drops its slot on the shared write cluster, which would keep WAL else.
        try:
            server.sql(name, f'DROP SUBSCRIPTION IF EXISTS "{subscription}"')
        finally:
            server.destroy()


def test_verify_and_rebuild_read_the_event_store(event_store: EventStore) -> None:
    # Deposits of both schema versions, as a store that ran the previous release holds them.
    events = event_store.numbered(mixed(ledger(accounts=12, moves=150, closed=2)))
    assert {e.schema_version for e in events if e.type == "MoneyDeposited"} == {1, 2}
    event_store.publish(events)
    project(events)
    built = _models()
    assert read_models_verify(event_store_dsn=event_store.url).clean

    with connection.cursor() as cursor:
        cursor.execute("UPDATE account_view SET balance = balance + 1")
    assert len(read_models_verify(event_store_dsn=event_store.url).drifts) == 12

    report = read_models_rebuild(event_store_dsn=event_store.url, batch_size=50)

    assert _models() == built
    assert (report.accounts, report.events_applied, report.failed) == (12, len(events), [])
    assert read_models_verify(event_store_dsn=event_store.url).clean


def test_the_rebuild_waits_for_the_event_store_to_receive_what_the_projector_applied(
    event_store: EventStore,
) -> None:
    events = event_store.numbered(ledger(accounts=6, moves=60, seed=11))
    early, late = events[:-10], events[-10:]
    event_store.publish(early)
    project(events)  # the projector is ahead of the store: the last events reach it only during the rebuild
    built = _models()

    def publish_late() -> None:
        event_store.publish(late)

    report = read_models_rebuild(event_store_dsn=event_store.url, before_swap=publish_late)

    assert _models() == built
    assert report.events_applied == len(events)


def test_the_command_reads_the_event_store_from_its_url(event_store: EventStore) -> None:
    events = event_store.numbered(ledger(accounts=8, moves=40, seed=3))
    event_store.publish(events)
    project(events)
    built = _models()
    read_models_clear()  # the read database lost: everything from the event store alone

    result = subprocess.run(
        [sys.executable, "-m", "read_service", "rebuild_read_models"],
        env={**os.environ, "EVENT_STORE_DATABASE_URL": event_store.url, "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"rebuilt 8 account(s) from {len(events)} event(s) of the event store" in result.stdout
    rebuilt = _models()
    assert [rebuilt[name] for name in ("accounts", "lines", "totals")] == [
        built[name] for name in ("accounts", "lines", "totals")
    ]


def test_a_rebuild_refuses_when_the_event_store_lacks_or_cannot_give_an_applied_event(
    event_store: EventStore,
) -> None:
    bad = LoggedAccount("bad")
    history = [*ledger(accounts=5, moves=30, seed=5), bad.opened(), bad.deposited("5.00")]
    events = event_store.numbered(history)
    deposited = events[-1]
    project(events)
    event_store.publish(events[:-1])  # the deposit has not reached the event store
    before = _models()

    with pytest.raises(RebuildRefused, match="the log still lacks 1 event"):
        read_models_rebuild(event_store_dsn=event_store.url, log_wait=0.3)
    assert _models() == before

    # The store's copy of the deposit is not what the projector applied: the handler refuses it.
    event_store.publish([replace(deposited, data={**deposited.data, "amount": "-5.00"})])
    with pytest.raises(RebuildRefused, match="could not be applied from the log"):
        read_models_rebuild(event_store_dsn=event_store.url)
    assert _models() == before
