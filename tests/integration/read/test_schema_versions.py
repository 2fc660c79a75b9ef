"""Events of two schema versions on the read side (CONTRACT.md, "Versioning"): a history of version 1 deposits
(as the previous release stored them) and version 2 ones (with a reference) projects live and rebuilds to the
same read models, verify's fold in SQL agrees, `dlq replay` and the reporting subscriber read both alike,
and a version this release cannot read is dead-lettered from the broker and from the replica while the rest
goes on."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from prometheus_client import REGISTRY

from cqrs_common.events import EventEnvelope, to_wire
from cqrs_common.messaging import Consumer, Delivery
from cqrs_common.upcasting import data_sql
from devkit.polling import eventually
from read_service.projections import handlers
from read_service.projections.apply import BROKER
from read_service.projections.event_log.rows import event_read, wire_sql
from read_service.projections.fallback import FallbackSettings, ReplicationFallback
from read_service.projections.intake import event_from_delivery
from read_service.projections.models import AccountView, DeadLetter, StatementLine
from read_service.projections.rebuild import read_models_rebuild
from read_service.projections.verify import read_models_verify
from read_service.reporting.counting import events_count
from read_service.reporting.history import history_after
from read_service.reporting.models import DailyTotal
from read_service.reporting.state import state_start
from tests.integration.read.conftest import AccountHistory
from tests.integration.read.replica_log import (  # noqa: F401
    LoggedAccount,
    ReplicaLog,
    as_version,
    as_version_1,
    ledger,
    mixed,
    read_models_snapshot,
    replica_log_fixture,
)
from tests.integration.read.test_replication_fallback import ScratchReplica

UNSUPPORTED = "unsupported_schema_version"


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _lines(account_id: uuid.UUID) -> list[tuple[int, str, Decimal, str | None]]:
    return list(
        StatementLine.objects.filter(account_id=account_id)
        .order_by("version")
        .values_list("version", "kind", "amount", "reference")
    )


def _applied() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM applied_events")
        return cursor.fetchone()[0]


# ------------------------------------------------------------------------------ a history of both versions


def test_a_mixed_history_projected_live_rebuilds_to_the_same_read_models(
    replica_log: ReplicaLog, publish, start_projector
) -> None:
    events = mixed(ledger(accounts=12, moves=240, seed=11))
    versions = {e.schema_version for e in events if e.type == "MoneyDeposited"}
    assert versions == {1, 2}
    replica_log.append(events)
    start_projector()
    publish(*events)  # live, through the broker: every body read by from_wire and upcast there
    eventually(lambda: _applied() == len(events), timeout=60.0, what="every event applied")
    live = read_models_snapshot()

    report = read_models_rebuild(batch_size=53)  # from the replica table: rows read by from_dict

    assert (report.events_applied, report.failed, report.unreadable) == (len(events), [], [])
    assert read_models_snapshot() == live
    verified = read_models_verify()
    assert verified.clean and verified.settled, verified
    assert verified.events_checked == len(events)
    deposits = {(e.aggregate_id, e.aggregate_version): e for e in events if e.type == "MoneyDeposited"}
    lines = StatementLine.objects.filter(kind="deposit").values_list("account_id", "version", "reference")
    assert {(a, v): r for a, v, r in lines} == {
        key: None if e.schema_version == 1 else e.data["reference"] for key, e in deposits.items()
    }


def test_verify_folds_with_the_same_rule_as_the_readers(replica_log: ReplicaLog) -> None:
    """The chain in SQL (verify's fold) and in Python (every other reader) read each row alike."""
    alice = LoggedAccount()
    events = [alice.opened(), as_version_1(alice.deposited("1.00")), alice.deposited("2.00", "REF")]
    events += [as_version_1(alice.deposited("3.00")), alice.withdrawn("1.00")]
    replica_log.append(events)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {wire_sql('e')}, ({data_sql('e')})::text FROM public.events e ORDER BY position"
        )
        rows = [(event_read(json.loads(wire)), json.loads(data)) for wire, data in cursor.fetchall()]
    assert len(rows) == len(events)
    for read, data in rows:
        assert isinstance(read, EventEnvelope) and read.data == data
    assert [data.get("reference", "-") for _, data in rows] == ["-", None, "REF", None, "-"]


# ------------------------------------------------------------------------------ a version it cannot read


def test_a_version_it_cannot_read_is_dead_lettered_from_the_broker_and_the_rest_applied(
    broker: Consumer, publish, publish_raw, start_projector
) -> None:
    alice = AccountHistory()
    publish(alice.opened())
    start_projector()
    eventually(lambda: AccountView.objects.filter(account_id=alice.account_id).exists(), timeout=10.0)
    before = _metric("cqrs_events_dead_lettered_total", reason=UNSUPPORTED)
    refused = []
    for schema_version in (3, 0):
        newer = as_version(alice.deposited("100.00", "FROM-THE-FUTURE"), schema_version)
        alice.version -= 1  # the good deposit takes this version
        publish_raw(to_wire(newer), message_id=str(newer.event_id))
        refused.append(str(newer.event_id))
    publish(as_version_1(alice.deposited("1.00")), alice.deposited("2.00", "INV-1"))

    eventually(lambda: len(_lines(alice.account_id)) == 2, timeout=10.0, what="both deposits applied")
    assert _lines(alice.account_id) == [
        (2, "deposit", Decimal("1.00"), None),
        (3, "deposit", Decimal("2.00"), "INV-1"),
    ]
    eventually(lambda: DeadLetter.objects.filter(reason=UNSUPPORTED).count() == 2, timeout=10.0)
    assert sorted(
        DeadLetter.objects.filter(reason=UNSUPPORTED).values_list("message_id", flat=True)
    ) == sorted(refused)
    assert _metric("cqrs_events_dead_lettered_total", reason=UNSUPPORTED) == before + 2


def test_dlq_replay_of_a_version_1_deposit_reads_it_as_version_2(
    broker: Consumer, publish, start_projector, monkeypatch, capsys
) -> None:
    alice = AccountHistory()
    publish(alice.opened())
    start_projector()
    eventually(lambda: AccountView.objects.filter(account_id=alice.account_id).exists(), timeout=10.0)
    fixed = handlers.PROJECTIONS["MoneyDeposited"]

    def broken(cursor: object, event: EventEnvelope) -> None:
        raise RuntimeError("a bug in the deposit projection")

    monkeypatch.setitem(handlers.PROJECTIONS, "MoneyDeposited", handlers.Projection(broken))
    deposit = as_version_1(alice.deposited("5.00"))
    publish(deposit)  # its message is version 1, as the previous release's relay published it
    eventually(lambda: DeadLetter.objects.filter(message_id=str(deposit.event_id)).exists(), timeout=10.0)

    monkeypatch.setitem(handlers.PROJECTIONS, "MoneyDeposited", fixed)
    call_command("dlq", "replay")  # republished as it was received: still version 1

    assert "replayed 1 message(s)" in capsys.readouterr().out
    eventually(lambda: len(_lines(alice.account_id)) == 1, timeout=10.0, what="the replayed deposit")
    assert _lines(alice.account_id) == [(2, "deposit", Decimal("5.00"), None)]


@pytest.fixture
def scratch_replica(transactional_db: None) -> Iterator[ScratchReplica]:
    table = ScratchReplica()
    yield table
    table.drop()


def test_a_version_it_cannot_read_is_dead_lettered_from_the_replica_and_the_rest_applied(
    scratch_replica: ScratchReplica,
) -> None:
    fallback = ReplicationFallback(FallbackSettings(table=scratch_replica.table))
    alice, bob = AccountHistory(), AccountHistory("bob")  # their events occurred minutes ago: past the grace
    before = _metric("cqrs_events_dead_lettered_total", reason=UNSUPPORTED)
    scratch_replica.insert(
        alice.opened(), as_version_1(alice.deposited("1.00")), alice.deposited("2.00", "R")
    )
    newer = as_version(alice.deposited("100.00", "FROM-THE-FUTURE"), 3)
    scratch_replica.insert(newer, bob.opened(), as_version_1(bob.deposited("5.00")))

    assert fallback.round(BROKER) == 5

    assert _lines(alice.account_id) == [
        (2, "deposit", Decimal("1.00"), None),
        (3, "deposit", Decimal("2.00"), "R"),
    ]
    assert _lines(bob.account_id) == [(2, "deposit", Decimal("5.00"), None)]
    [letter] = DeadLetter.objects.all()
    assert (letter.reason, letter.message_id) == (UNSUPPORTED, str(newer.event_id))
    assert json.loads(bytes(letter.body))["schema_version"] == 3  # kept as read, for `dlq replay`
    assert _metric("cqrs_events_dead_lettered_total", reason=UNSUPPORTED) == before + 1
    assert fallback.round(BROKER) == 0  # once: the row is accounted for


# ------------------------------------------------------------------------------ the reporting subscriber


def test_the_reporting_subscriber_counts_both_versions_alike(replica_log: ReplicaLog) -> None:
    """From the log (rows read as events) and from its queue (messages read as events)."""
    subscription = f"test-{uuid.uuid4().hex[:8]}"
    state_start(subscription, queue_was_new=True)
    alice = LoggedAccount()
    logged = [alice.opened(), as_version_1(alice.deposited("10.00")), alice.deposited("5.00", "INV-2")]
    replica_log.append(logged)
    history = history_after(0, bound_at=alice.clock, limit=100)
    assert (len(history.events), history.refused) == (3, [])
    events_count(subscription, history.events, path="history", replica_seq=history.last_seq)

    live = [as_version_1(alice.deposited("1.50")), alice.deposited("2.50")]
    read = [event_from_delivery(_delivery(event)) for event in live]
    assert all(isinstance(event, EventEnvelope) for event in read)
    events_count(subscription, read, path="live")  # type: ignore[arg-type]

    [day] = DailyTotal.objects.filter(subscription=subscription)
    assert (day.deposits, day.deposited, day.largest_movement, day.events) == (
        4,
        Decimal("19.00"),
        Decimal("10.00"),
        5,
    )


def _delivery(event: EventEnvelope) -> Delivery:
    return Delivery(
        delivery_tag=0,
        body=to_wire(event),
        routing_key=event.routing_key,
        exchange="cqrs.events",
        redelivered=False,
        message_id=str(event.event_id),
        type=event.type,
        content_type="application/json",
    )
