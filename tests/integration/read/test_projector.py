"""The projector against real RabbitMQ and the real read DB: apply, dead-letter, replay, restart."""

from __future__ import annotations

import json
import signal
from decimal import Decimal

import pytest
from django.core.management import call_command
from prometheus_client import REGISTRY

from cqrs_common.events import to_wire
from cqrs_common.messaging import DEAD_LETTER_QUEUE, Consumer
from devkit.metrics import scrape
from devkit.polling import eventually
from read_service.projections import handlers
from read_service.projections.models import AccountView, AppliedEvent, DeadLetter
from tests.integration.read.conftest import (
    AccountHistory,
    projector_command,
    transfer,
)


def _balance(history: AccountHistory) -> Decimal | None:
    return AccountView.objects.filter(account_id=history.account_id).values_list("balance", flat=True).first()


def _version(history: AccountHistory) -> int:
    return (
        AccountView.objects.filter(account_id=history.account_id).values_list("version", flat=True).first()
        or 0
    )


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _queues_settle(broker: Consumer, dead_letters: int) -> bool:
    return broker.backlog() == 0 and broker.message_count(DEAD_LETTER_QUEUE) == dead_letters


def test_published_events_are_applied_and_acknowledged(broker, publish, start_projector) -> None:
    applied_before = _metric("cqrs_events_applied_total", type="MoneyDeposited", path="broker")
    lag_before = _metric("cqrs_consume_lag_seconds_count")
    alice, bob = AccountHistory("alice"), AccountHistory("bob")
    start_projector()

    publish(alice.opened(), bob.opened(), alice.deposited("30.00"))
    debit, credit = transfer(alice, bob, "12.00")
    publish(debit, credit)

    eventually(lambda: _version(alice) == 3 and _version(bob) == 2, timeout=10.0)
    assert (_balance(alice), _balance(bob)) == (Decimal("18.00"), Decimal("12.00"))
    assert _metric("cqrs_events_applied_total", type="MoneyDeposited", path="broker") == applied_before + 1
    assert _metric("cqrs_consume_lag_seconds_count") >= lag_before + 5
    assert _metric("cqrs_projection_mode", path="broker") == 1
    assert _metric("cqrs_projection_mode", path="replication") == 0
    eventually(lambda: _queues_settle(broker, dead_letters=0), timeout=10.0)


def test_each_kind_of_poison_is_dead_lettered_and_the_next_event_still_applied(
    broker, publish, publish_raw, start_projector, monkeypatch
) -> None:
    alice = AccountHistory()
    opened = alice.opened()
    publish(opened)
    start_projector()
    eventually(lambda: _version(alice) == 1, timeout=10.0)
    before = {
        r: _metric("cqrs_events_dead_lettered_total", reason=r)
        for r in ("malformed_json", "unknown_type", "unsupported_schema_version", "handler_failed")
    }

    def poison(reason: str) -> tuple[bytes, str]:
        """A body refused for `reason` and its message id (the event id, as the relay sets it), built from
        the next version, which the good event then takes."""
        wire = json.loads(to_wire(alice.deposited("1.00")))
        alice.version -= 1
        return {
            "malformed_json": b"{not json",
            "unknown_type": json.dumps({**wire, "type": "MoneyPrinted"}).encode(),
            "unsupported_schema_version": json.dumps({**wire, "schema_version": 99}).encode(),
            "handler_failed": json.dumps({**wire, "data": {**wire["data"], "amount": "not-money"}}).encode(),
        }[reason], wire["event_id"]

    good, ids = [], {}
    for reason in before:
        body, ids[reason] = poison(reason)
        publish_raw(body, message_id=ids[reason])
        good.append(alice.deposited("2.00"))
        publish(good[-1])

    eventually(lambda: _version(alice) == 1 + len(good), timeout=10.0)
    assert _balance(alice) == Decimal("8.00")
    eventually(lambda: _queues_settle(broker, dead_letters=4), timeout=10.0)
    records = {r.reason: r for r in DeadLetter.objects.all()}
    assert {reason: record.message_id for reason, record in records.items()} == ids
    assert records["handler_failed"].routing_key == "account.MoneyDeposited"
    for reason in before:
        assert _metric("cqrs_events_dead_lettered_total", reason=reason) == before[reason] + 1


def test_dlq_replay_resends_after_the_cause_is_fixed(
    broker, publish, start_projector, monkeypatch, capsys
) -> None:
    alice = AccountHistory()
    publish(alice.opened())
    start_projector()
    eventually(lambda: _version(alice) == 1, timeout=10.0)

    def broken(cursor, event):
        raise RuntimeError("a bug in the deposit projection")

    fixed = handlers.PROJECTIONS["MoneyDeposited"]
    monkeypatch.setitem(handlers.PROJECTIONS, "MoneyDeposited", handlers.Projection(broken))
    deposit = alice.deposited("5.00")
    publish(deposit)
    eventually(lambda: _queues_settle(broker, dead_letters=1), timeout=10.0)
    assert DeadLetter.objects.get().message_id == str(deposit.event_id)

    call_command("dlq", "list")
    listed = capsys.readouterr().out
    assert str(deposit.event_id) in listed and "1 message(s)" in listed

    monkeypatch.setitem(handlers.PROJECTIONS, "MoneyDeposited", fixed)  # the fix is deployed
    call_command("dlq", "replay")
    assert "replayed 1 message(s)" in capsys.readouterr().out

    eventually(lambda: _version(alice) == 2, timeout=10.0)
    assert _balance(alice) == Decimal("5.00")
    assert DeadLetter.objects.get().replayed_at is not None
    eventually(lambda: _queues_settle(broker, dead_letters=0), timeout=10.0)


def test_dlq_purge_drops_messages_and_closes_records(broker, publish_raw, start_projector, capsys) -> None:
    start_projector()
    publish_raw(b"[]")
    publish_raw(b"")
    eventually(lambda: _queues_settle(broker, dead_letters=2), timeout=10.0)

    call_command("dlq", "purge")

    assert "purged 2 message(s), 2 record(s)" in capsys.readouterr().out
    assert broker.message_count(DEAD_LETTER_QUEUE) == 0
    assert not DeadLetter.objects.filter(purged_at__isnull=True).exists()


def test_duplicates_after_a_restart_are_acknowledged_and_ignored(broker, publish, start_projector) -> None:
    alice = AccountHistory()
    events = [alice.opened(), alice.deposited("10.00"), alice.withdrawn("4.00")]
    first = start_projector()
    publish(*events)
    eventually(lambda: _version(alice) == 3, timeout=10.0)
    first.stop()
    duplicates_before = _metric("cqrs_events_duplicate_total", path="broker")

    publish(*events)  # the relay resends after a crash before its bookkeeping
    start_projector()

    eventually(
        lambda: _metric("cqrs_events_duplicate_total", path="broker") == duplicates_before + 3, timeout=10.0
    )
    eventually(lambda: _queues_settle(broker, dead_letters=0), timeout=10.0)
    assert _balance(alice) == Decimal("6.00")
    assert AppliedEvent.objects.filter(aggregate_id=alice.account_id).count() == 3


def test_event_ahead_of_its_predecessor_waits_for_it(broker, publish, start_projector) -> None:
    alice = AccountHistory()
    v1, v2, v3 = alice.opened(), alice.deposited("1.00"), alice.deposited("2.00")
    start_projector()

    publish(v1, v3)
    eventually(lambda: _version(alice) == 1, timeout=10.0)
    eventually(lambda: _queues_settle(broker, dead_letters=0), timeout=10.0)  # v3 is parked and acknowledged
    publish(v2)

    eventually(lambda: _version(alice) == 3, timeout=10.0)
    assert _balance(alice) == Decimal("3.00")


@pytest.mark.slow
def test_a_backlog_is_taken_in_batches(broker, publish, start_projector) -> None:
    accounts = [AccountHistory() for _ in range(20)]
    events = [a.opened() for a in accounts] + [a.deposited("1.00") for a in accounts for _ in range(24)]
    publish(*events)  # 500 events wait before the projector starts

    start_projector()

    eventually(lambda: AppliedEvent.objects.count() == len(events), timeout=30)
    assert all(_balance(a) == Decimal("24.00") for a in accounts)


@pytest.mark.slow
def test_command_serves_metrics_and_stops_cleanly_on_sigterm(
    broker, broker_url, publish, empty_replica
) -> None:
    with projector_command(broker_url, log_level="DEBUG", capture=True) as (process, port):
        alice = AccountHistory()
        publish(alice.opened(), alice.deposited("3.00"))
        eventually(lambda: _version(alice) == 2, timeout=30)
        exposition = eventually(lambda: scrape(f"http://127.0.0.1:{port}/metrics"), timeout=10)
        for name in (
            'cqrs_events_applied_total{path="broker",type="MoneyDeposited"} 1.0',
            "cqrs_consume_lag_seconds_count 2.0",
            "cqrs_end_to_end_lag_seconds_count 2.0",
            'cqrs_projection_mode{path="broker"} 1.0',
        ):
            assert name in exposition
        assert "cqrs_outbox_backlog" not in exposition  # the relay's metrics are not the projector's

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    lines = [json.loads(line) for line in process.stdout.read().decode().splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert "projector_started" in events and events[-1] == "projector_stopped"
    applied = [line for line in lines if line["event"] == "event_applied"]
    assert [line["correlation_id"] for line in applied] == ["test-correlation"] * 2
    assert all(line["service"] == "projector" for line in lines)
    assert _queues_settle(broker, dead_letters=0)


def test_dlq_replay_resends_an_event_whose_record_is_its_only_copy(
    broker, start_projector, monkeypatch, capsys
) -> None:
    from read_service.projections.apply import BROKER, apply_events

    alice = AccountHistory()
    v1, v2, v3 = alice.opened(), alice.deposited("5.00"), alice.withdrawn("2.00")
    fixed = handlers.PROJECTIONS["MoneyWithdrawn"]
    broken = handlers.Projection(lambda cursor, event: 1 / 0)
    monkeypatch.setitem(handlers.PROJECTIONS, "MoneyWithdrawn", broken)
    apply_events([v1, v3], path=BROKER)  # v3 parked; its message would have been acknowledged
    outcome = apply_events([v2], path=BROKER)  # v3 drained and fails: no message left to reject
    assert [f.event for f in outcome.failed] == [v3]
    assert DeadLetter.objects.get().body is not None

    monkeypatch.setitem(handlers.PROJECTIONS, "MoneyWithdrawn", fixed)
    start_projector()
    call_command("dlq", "replay")

    assert "replayed 1 message(s)" in capsys.readouterr().out
    eventually(lambda: _version(alice) == 3, timeout=10.0)
    assert _balance(alice) == Decimal("3.00")
    assert DeadLetter.objects.get().replayed_at is not None
