"""The replication fallback against the real read DB and broker: grace period, commit-order cursor, gaps,
both paths at once, rows that are not events, and the switch to the replicated log while the broker is away.

Each test writes its replica rows into a scratch table shaped like the replicated `events` (the real one is
written by the subscription alone); an insert here is one transaction applied by the subscription.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import ProgrammingError, connection, transaction
from prometheus_client import REGISTRY

from cqrs_common.events import EventEnvelope
from cqrs_common.messaging import BrokerError, Consumer
from devkit.polling import eventually
from read_service.projections.apply import BROKER, REPLICATION, apply_events
from read_service.projections.event_log.replica import replica_cursor_get
from read_service.projections.event_log.subscription import (
    ABSENT,
    DISABLED,
    STOPPED,
    STREAMING,
    subscription_status,
)
from read_service.projections.fallback import FallbackSettings, ReplicationFallback
from read_service.projections.models import (
    AccountView,
    AppliedEvent,
    DeadLetter,
    PendingEvent,
    ProjectorState,
)
from read_service.projections.projector import Projector
from read_service.projections.state import ActivePath
from tests.integration.read.conftest import AccountHistory

GRACE = 2.0
FAILURES = "cqrs_projector_failures_total"


class ScratchReplica:
    """A table shaped like the replicated `events` (`replica_seq` included): a copy of the real replica's
    definition (deploy/compose/replication/subscriber.sql), so the two cannot drift apart."""

    def __init__(self) -> None:
        self.table = f"test_replica_{uuid.uuid4().hex[:12]}"
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('public.events') IS NOT NULL")
            assert cursor.fetchone()[0], "no replica: run deploy/local/replication.sh (make migrate-test)"
            cursor.execute(f"CREATE TABLE {self.table} (LIKE public.events INCLUDING ALL)")

    def insert(self, *events: EventEnvelope, event_type: str | None = None) -> None:
        """One subscription transaction: rows get replica_seq in this order."""
        with connection.cursor() as cursor:
            for event in events:
                cursor.execute(
                    f"""
                    INSERT INTO {self.table} (position, event_id, aggregate_type, aggregate_id,
                           aggregate_version, event_type, schema_version, data, occurred_at, correlation_id)
                    VALUES (%s, %s, 'account', %s, %s, %s, %s, %s::jsonb, %s, %s)
                    """,
                    [
                        event.position,
                        event.event_id,
                        event.aggregate_id,
                        event.aggregate_version,
                        event_type or event.type,
                        event.schema_version,
                        json.dumps(event.data),
                        event.occurred_at,
                        event.correlation_id,
                    ],
                )

    def drop(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {self.table}")


@pytest.fixture
def replica(transactional_db: None) -> Iterator[ScratchReplica]:
    table = ScratchReplica()
    yield table
    table.drop()


@pytest.fixture
def fallback(replica: ScratchReplica) -> ReplicationFallback:
    return ReplicationFallback(FallbackSettings(grace_seconds=GRACE, table=replica.table, batch_size=3))


def _balance(history: AccountHistory) -> Decimal | None:
    return AccountView.objects.filter(account_id=history.account_id).values_list("balance", flat=True).first()


def _paths(history: AccountHistory) -> list[tuple[int, str]]:
    return list(
        AppliedEvent.objects.filter(aggregate_id=history.account_id)
        .order_by("version")
        .values_list("version", "path")
    )


def _old() -> AccountHistory:
    """An account whose events occurred minutes ago: past any grace period."""
    return AccountHistory(start=datetime.now(UTC) - timedelta(minutes=5))


def _young() -> AccountHistory:
    return AccountHistory(start=datetime.now(UTC) - timedelta(seconds=1))


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_events_the_broker_did_not_bring_within_the_grace_period_are_applied_from_the_replica(
    replica: ScratchReplica, fallback: ReplicationFallback
) -> None:
    before = _metric("cqrs_events_applied_total", type="MoneyDeposited", path=REPLICATION)
    alice = _old()
    replica.insert(alice.opened(), alice.deposited("10.00"))
    replica.insert(*(alice.deposited("1.00") for _ in range(5)))  # more than one batch of 3

    assert fallback.round(BROKER) == 7

    assert _balance(alice) == Decimal("15.00")
    assert _paths(alice) == [(version, REPLICATION) for version in range(1, 8)]
    assert _metric("cqrs_events_applied_total", type="MoneyDeposited", path=REPLICATION) == before + 6
    assert replica_cursor_get() == 7
    assert fallback.round(BROKER) == 0  # nothing left: the cursor is past everything


def test_young_events_are_left_to_the_broker_and_the_cursor_waits_for_them(replica: ScratchReplica) -> None:
    fallback = ReplicationFallback(FallbackSettings(grace_seconds=GRACE, table=replica.table))
    old, young = _old(), _young()
    opened_old, opened_young = old.opened(), young.opened()
    deposit_young = young.deposited("2.00")
    replica.insert(opened_old)
    replica.insert(opened_young, deposit_young)
    replica.insert(old.deposited("3.00"))  # committed after the young ones, yet due

    assert fallback.round(BROKER) == 2  # the old account's two events, not the young one's

    assert _paths(young) == []
    assert replica_cursor_get() == 1  # it stops before the first row still inside its grace period
    apply_events([opened_young, deposit_young], path=BROKER)  # the broker brings them in time
    assert fallback.round(BROKER) == 0
    assert replica_cursor_get() == 4  # known now: passed
    assert _paths(young) == [(1, BROKER), (2, BROKER)]
    assert _balance(old) == Decimal("3.00")


def test_while_the_broker_path_is_down_every_event_is_applied_at_once(
    replica: ScratchReplica, fallback: ReplicationFallback
) -> None:
    alice = AccountHistory(start=datetime.now(UTC))
    replica.insert(alice.opened(), alice.deposited("4.00"))

    assert fallback.round(REPLICATION) == 2

    assert _balance(alice) == Decimal("4.00")
    assert ProjectorState.objects.get(id=1).mode == REPLICATION


def test_the_predecessor_a_parked_event_waits_for_is_filled_from_the_replica_at_once(
    replica: ScratchReplica, fallback: ReplicationFallback
) -> None:
    alice = _young()
    opened, first, second, third = (
        alice.opened(),
        alice.deposited("1.00"),
        alice.deposited("2.00"),
        alice.deposited("4.00"),
    )
    replica.insert(opened, first, second, third)
    apply_events([opened, first, third], path=BROKER)  # `second` got lost on the way: `third` is parked

    assert fallback.round(BROKER) == 2  # `second` from the replica, then the parked `third` with it

    assert _balance(alice) == Decimal("7.00")
    assert _paths(alice) == [(1, BROKER), (2, BROKER), (3, REPLICATION), (4, BROKER)]
    assert fallback.round(BROKER) == 0


def test_a_parked_event_that_is_next_already_is_applied_by_the_next_round(
    replica: ScratchReplica, fallback: ReplicationFallback
) -> None:
    """Version 3 parked while version 2 is applied (as a rebuild's swap can leave it): no event will ever
    drain it, so the gap-filling round does."""
    alice = _young()
    opened, second, third, fourth = (
        alice.opened(),
        alice.deposited("1.00"),
        alice.deposited("2.00"),
        alice.deposited("4.00"),
    )
    apply_events([opened, third, fourth], path=BROKER)  # parked: 3 and 4
    with connection.cursor() as cursor:  # version 2 applied without draining, as the swap moves tables in
        cursor.execute("ALTER TABLE pending_events RENAME TO pending_events_aside")
        cursor.execute("CREATE TABLE pending_events (LIKE pending_events_aside INCLUDING ALL)")
        try:
            apply_events([second], path=REPLICATION)
        finally:
            cursor.execute("DROP TABLE pending_events")
            cursor.execute("ALTER TABLE pending_events_aside RENAME TO pending_events")
    assert _paths(alice) == [(1, BROKER), (2, REPLICATION)]

    assert fallback.round(BROKER) == 2

    assert _balance(alice) == Decimal("7.00")
    assert _paths(alice) == [(1, BROKER), (2, REPLICATION), (3, BROKER), (4, BROKER)]
    assert not PendingEvent.objects.filter(aggregate_id=alice.account_id).exists()
    assert fallback.round(BROKER) == 0


def test_an_event_both_paths_bring_is_applied_once(
    replica: ScratchReplica, fallback: ReplicationFallback
) -> None:
    duplicates_before = _metric("cqrs_events_duplicate_total", path=BROKER)
    alice = _old()
    events = [alice.opened(), alice.deposited("5.00")]
    replica.insert(*events)
    fallback.round(BROKER)

    outcome = apply_events(events, path=BROKER)  # the broker brings them late

    assert outcome.applied == [] and len(outcome.duplicates) == 2
    assert _metric("cqrs_events_duplicate_total", path=BROKER) == duplicates_before + 2
    assert _balance(alice) == Decimal("5.00")
    assert AppliedEvent.objects.filter(aggregate_id=alice.account_id).count() == 2


def test_a_row_that_is_not_an_event_of_this_contract_is_dead_lettered_once_and_passed(
    replica: ScratchReplica, fallback: ReplicationFallback
) -> None:
    alice, bob = _old(), _old()
    replica.insert(alice.opened())
    replica.insert(alice.deposited("1.00"), event_type="MoneyInvented")
    replica.insert(bob.opened())

    assert fallback.round(BROKER) == 2

    letters = list(DeadLetter.objects.all())
    assert [(d.reason, d.event_type) for d in letters] == [("unknown_type", "MoneyInvented")]
    assert json.loads(bytes(letters[0].body))["type"] == "MoneyInvented"  # kept for `dlq replay`
    assert replica_cursor_get() == 3
    fallback.round(BROKER)
    fallback.scan(grace_seconds=None)
    assert DeadLetter.objects.count() == 1


def test_the_cursor_follows_commit_order_not_positions(
    replica: ScratchReplica, fallback: ReplicationFallback
) -> None:
    """A transaction holding a low position may commit after one holding a higher: both are applied."""
    alice, bob = _old(), _old()
    late = alice.opened()
    early = bob.opened()
    assert late.position < early.position
    replica.insert(early)
    assert fallback.round(BROKER) == 1
    replica.insert(late)  # commits later with the lower position

    assert fallback.round(BROKER) == 1

    assert _paths(alice) == [(1, REPLICATION)] and replica_cursor_get() == 2


def test_with_the_broker_unreachable_the_projector_runs_on_the_replicated_log_until_it_returns(
    broker_url: str, broker: Consumer, publish, replica: ScratchReplica
) -> None:
    reachable = threading.Event()

    def connect() -> Consumer:
        if not reachable.is_set():
            raise BrokerError("connection refused (test)")
        return Consumer(broker_url, connection_name="test-projector", prefetch=200)

    settings = FallbackSettings(grace_seconds=GRACE, table=replica.table, status_interval=0.5)
    projector = Projector(connect, receive_timeout=0.2, fallback=ReplicationFallback(settings))
    stop = threading.Event()
    thread = threading.Thread(target=projector.run, args=(stop,), daemon=True)
    thread.start()
    try:
        alice = AccountHistory(start=datetime.now(UTC))  # brand new: no grace period while on replication
        replica.insert(alice.opened(), alice.deposited("5.00"))
        eventually(lambda: _balance(alice) == Decimal("5.00"), timeout=5)
        assert _paths(alice) == [(1, REPLICATION), (2, REPLICATION)]
        assert ProjectorState.objects.get(id=1).mode == REPLICATION
        assert _metric("cqrs_projection_mode", path=REPLICATION) == 1

        reachable.set()
        eventually(lambda: ProjectorState.objects.get(id=1).mode == BROKER, timeout=15)
        assert _metric("cqrs_projection_mode", path=BROKER) == 1
        publish(alice.deposited("1.00"))
        eventually(lambda: _balance(alice) == Decimal("6.00"), timeout=5)
        assert _paths(alice)[-1] == (3, BROKER)
    finally:
        stop.set()
        thread.join(timeout=15)
    assert not thread.is_alive()


# ------------------------------------------------------------------------- the real replica and its stream

WRITES = [
    "INSERT INTO events (position, event_id, aggregate_type, aggregate_id, aggregate_version, event_type,"
    " schema_version, data, occurred_at) VALUES (-1, gen_random_uuid(), 'account', gen_random_uuid(), 1,"
    " 'AccountOpened', 1, '{}', now())",
    "UPDATE events SET data = data",
    "DELETE FROM events",
    "TRUNCATE events",
    "ALTER TABLE events ADD COLUMN forged integer",
    "DROP TABLE events",  # refused: the superuser owns the schema `public` too (its owner may drop in it)
    "ALTER TABLE events RENAME TO gone",
]


@pytest.mark.django_db
@pytest.mark.parametrize("statement", WRITES, ids=lambda s: s.split()[0].lower())
def test_nothing_but_the_subscription_can_write_the_replica(statement: str) -> None:
    """A row written here by anyone else would collide with a replicated one and halt the stream."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('public.events') IS NOT NULL")
        assert cursor.fetchone()[0], "no replica: run deploy/local/replication.sh (make migrate-test)"
    with (
        pytest.raises(ProgrammingError, match=r"permission denied|must be owner"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)


@pytest.mark.django_db
def test_the_subscription_feeding_the_replica_is_reported() -> None:
    status = subscription_status()

    assert status.subscription == f"{connection.settings_dict['NAME']}_events"
    assert status.status in {STREAMING, STOPPED, DISABLED}
    assert subscription_status(table="no_such_table").status == ABSENT


def test_a_failing_round_is_logged_counted_and_retried_until_it_succeeds(
    replica: ScratchReplica, fallback: ReplicationFallback
) -> None:
    failures = _metric(FAILURES, component="replication_fallback")
    path, halt = ActivePath(), threading.Event()
    path.use(REPLICATION)
    with connection.cursor() as cursor:  # the table goes away (a botched migration, a dropped subscription)
        cursor.execute(f"ALTER TABLE {replica.table} RENAME TO {replica.table}_away")
    thread = threading.Thread(target=fallback.run, args=(path, halt), daemon=True)
    thread.start()
    try:
        eventually(lambda: _metric(FAILURES, component="replication_fallback") >= failures + 2, timeout=10.0)
        assert thread.is_alive()

        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {replica.table}_away RENAME TO {replica.table}")
        alice = _old()
        replica.insert(alice.opened(), alice.deposited("4.00"))
        eventually(lambda: _balance(alice) == Decimal("4.00"), timeout=20)
    finally:
        halt.set()
        thread.join(timeout=10)
