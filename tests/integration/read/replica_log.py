"""Fixtures of the maintenance tests (verify, rebuild): the event log in the read database's replica table.

The replica table `public.events` belongs to the PostgreSQL superuser (only the subscription writes it), so
the fixture writes it as the superuser through psql over the local socket, as deploy/local/replication.sh
does. Events get positions from 10^15 on: the subscription of the test database may still stream real
events of the write side (positions from 1), and a clash would halt it.

Test modules import the fixture from here (`replica_log_fixture`, used as the fixture `replica_log`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import random
import subprocess
from collections.abc import Iterable, Iterator
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection

from cqrs_common.events import EventEnvelope, format_timestamp, from_wire, to_wire
from read_service.projections.apply import BROKER, apply_events
from tests.integration.read.conftest import AccountHistory, transfer

FIRST_POSITION = 10**15
_positions = itertools.count(FIRST_POSITION)
READ_MODEL_TABLES = (
    "account_view, statement_lines, currency_totals, applied_events, pending_events, projector_state, "
    "dead_letters"
)
COLUMNS = (
    "position, event_id, aggregate_type, aggregate_id, aggregate_version, event_type, schema_version, data, "
    "occurred_at, correlation_id, causation_id"
)


class LoggedAccount(AccountHistory):
    """An account's consecutive events, numbered in the replica's own position range."""

    def next(self, event_type: str, **data: object) -> EventEnvelope:
        event = super().next(event_type, **data)
        return EventEnvelope(
            event_id=event.event_id,
            type=event.type,
            aggregate_id=event.aggregate_id,
            aggregate_version=event.aggregate_version,
            position=next(_positions),
            occurred_at=event.occurred_at,
            data=event.data,
            schema_version=event.schema_version,
            correlation_id=event.correlation_id,
        )


class ReplicaLog:
    """The replica table of the test read database, written as the superuser."""

    def __init__(self) -> None:
        database = settings.DATABASES["default"]
        self._psql = [
            "runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
            "-p", str(database.get("PORT") or 5432), "-d", database["NAME"],
        ]  # fmt: skip

    def append(self, events: Iterable[EventEnvelope]) -> None:
        """Adds events as the subscription would (one COPY, committed when it returns)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for e in events:
            writer.writerow(
                [
                    e.position,
                    e.event_id,
                    e.aggregate_type,
                    e.aggregate_id,
                    e.aggregate_version,
                    e.type,
                    e.schema_version,
                    json.dumps(e.data),
                    format_timestamp(e.occurred_at),
                    e.correlation_id,
                    e.causation_id,
                ]
            )
        self._run(f"COPY public.events ({COLUMNS}) FROM STDIN WITH (FORMAT csv)", stdin=buffer.getvalue())

    def truncate(self) -> None:
        self._run("TRUNCATE public.events")

    def _run(self, sql: str, stdin: str = "") -> None:
        result = subprocess.run(
            [*self._psql, "-c", sql], input=stdin, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, result.stderr


def read_models_snapshot() -> dict[str, list[tuple]]:
    """Everything the rebuild replaces, and the bookkeeping it must leave consistent."""
    queries = {
        "accounts": "SELECT * FROM account_view ORDER BY account_id",
        "lines": "SELECT * FROM statement_lines ORDER BY account_id, version",
        "totals": "SELECT * FROM currency_totals ORDER BY currency",
        "applied": "SELECT * FROM applied_events ORDER BY event_id",
        "events_applied": "SELECT events_applied FROM projector_state",
    }
    with connection.cursor() as cursor:
        result = {}
        for name, sql in queries.items():
            cursor.execute(sql)
            result[name] = cursor.fetchall()
    return result


def read_models_clear() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {READ_MODEL_TABLES}")


@pytest.fixture(name="replica_log")
def replica_log_fixture(transactional_db: None) -> Iterator[ReplicaLog]:
    """An empty log and empty read models (real commits: the commands under test run their own
    transactions); both emptied again afterwards."""
    log = ReplicaLog()
    log.truncate()
    read_models_clear()
    yield log
    log.truncate()


def project(events: Iterable[EventEnvelope]) -> None:
    """Applies events as the projector does (the broker path): each read from its message body (so an older
    schema version is upcast, as `from_wire` does it), in batches of 500."""
    events = [from_wire(to_wire(event)) for event in events]
    for start in range(0, len(events), 500):
        apply_events(events[start : start + 500], path=BROKER)


def ledger(accounts: int, moves: int, *, seed: int = 7, closed: int = 0) -> list[EventEnvelope]:
    """A plausible history in write order: `accounts` opened, `moves` deposits, withdrawals and transfers
    that never overdraw, then `closed` accounts emptied and closed. Same seed, same amounts."""
    rng = random.Random(seed)
    people = [LoggedAccount(f"owner-{i % 50}", "EUR" if i % 4 else "SEK") for i in range(accounts)]
    balances = {p.account_id: Decimal(0) for p in people}
    events = [p.opened() for p in people]
    for _ in range(moves):
        account = rng.choice(people)
        amount = Decimal(rng.randint(1, 50_000)) / 100
        kind = rng.random()
        if kind < 0.5 or balances[account.account_id] < amount:
            events.append(account.deposited(str(amount)))
            balances[account.account_id] += amount
        elif kind < 0.75:
            events.append(account.withdrawn(str(amount)))
            balances[account.account_id] -= amount
        else:
            peers = [p for p in people[:20] if p is not account and p.currency == account.currency]
            target = rng.choice(peers)
            events.extend(transfer(account, target, str(amount)))
            balances[account.account_id] -= amount
            balances[target.account_id] += amount
    for account in people[:closed]:
        if balances[account.account_id]:
            events.append(account.withdrawn(str(balances[account.account_id])))
        events.append(account.closed())
    return events


def as_version_1(event: EventEnvelope) -> EventEnvelope:
    """A deposit as the previous release stored and published it: version 1, `{"amount"}` alone."""
    assert event.type == "MoneyDeposited"
    return dataclasses.replace(event, schema_version=1, data={"amount": event.data["amount"]})


def as_version(event: EventEnvelope, schema_version: int) -> EventEnvelope:
    return dataclasses.replace(event, schema_version=schema_version)


def mixed(events: list[EventEnvelope], *, seed: int = 3) -> list[EventEnvelope]:
    """The history an upgrade leaves behind: about half the deposits stored as version 1, the others as
    version 2, some of those with a reference."""
    rng = random.Random(seed)
    history = []
    for number, event in enumerate(events):
        if event.type == "MoneyDeposited":
            if rng.random() < 0.5:
                event = as_version_1(event)
            elif rng.random() < 0.7:
                event = dataclasses.replace(event, data={**event.data, "reference": f"INV-{number:05d}"})
        history.append(event)
    return history
