"""The apply step against the real read DB: every event type, duplicates, ordering, restarts, failures."""

from __future__ import annotations

import dataclasses
import uuid
from decimal import Decimal

import pytest
from django.db import connection

from read_service.projections import handlers
from read_service.projections.apply import BROKER, REPLICATION, apply_events
from read_service.projections.gaps import pending_gaps
from read_service.projections.models import (
    AccountView,
    AppliedEvent,
    CurrencyTotal,
    DeadLetter,
    PendingEvent,
    ProjectorState,
    StatementLine,
)
from tests.integration.read.conftest import AccountHistory, transfer

pytestmark = pytest.mark.django_db


def _total(currency: str) -> CurrencyTotal | None:
    return CurrencyTotal.objects.filter(currency=currency).first()


def _statement(history: AccountHistory) -> list[tuple]:
    return list(
        StatementLine.objects.filter(account_id=history.account_id)
        .order_by("version")
        .values_list("version", "kind", "amount", "balance_after", "counterparty", "transfer_id")
    )


def test_every_event_type_projects_account_statement_and_totals() -> None:
    alice, bob = AccountHistory("alice", "SEK"), AccountHistory("bob", "SEK")
    debit, credit = None, None
    events = [alice.opened(), bob.opened(), alice.deposited("100.00"), alice.withdrawn("30.50")]
    debit, credit = transfer(alice, bob, "20.25")
    events += [debit, credit, bob.withdrawn("20.25"), bob.closed()]

    outcome = apply_events(events, path=BROKER)

    assert [item.event for item in outcome.applied] == events
    assert not outcome.duplicates and not outcome.parked and not outcome.failed
    a = AccountView.objects.get(account_id=alice.account_id)
    assert (a.owner, a.currency, a.balance, a.status, a.version) == (
        "alice",
        "SEK",
        Decimal("49.25"),
        "open",
        4,
    )
    assert a.opened_at == events[0].occurred_at and a.updated_at == debit.occurred_at
    b = AccountView.objects.get(account_id=bob.account_id)
    assert (b.balance, b.status, b.version) == (Decimal("0.00"), "closed", 4)
    transfer_id = debit.data["transfer_id"]
    assert _statement(alice) == [
        (2, "deposit", Decimal("100.00"), Decimal("100.00"), None, None),
        (3, "withdrawal", Decimal("30.50"), Decimal("69.50"), None, None),
        (4, "transfer_out", Decimal("20.25"), Decimal("49.25"), bob.account_id, _uuid(transfer_id)),
    ]
    assert _statement(bob) == [
        (2, "transfer_in", Decimal("20.25"), Decimal("20.25"), alice.account_id, _uuid(transfer_id)),
        (3, "withdrawal", Decimal("20.25"), Decimal("0.00"), None, None),
    ]
    total = _total("SEK")
    assert (total.total_balance, total.accounts, total.open_accounts) == (Decimal("49.25"), 2, 1)
    tracked = AppliedEvent.objects.filter(aggregate_id=alice.account_id).order_by("version")
    assert [(t.version, t.type, t.path, t.position) for t in tracked] == [
        (e.aggregate_version, e.type, "broker", e.position)
        for e in events
        if e.aggregate_id == alice.account_id
    ]
    state = ProjectorState.objects.get()
    assert state.events_applied >= len(events) and state.last_event_at >= bob.clock


def test_same_event_twice_is_a_duplicate_within_a_batch_and_across_calls() -> None:
    alice = AccountHistory(currency="NOK")
    opened, deposit = alice.opened(), alice.deposited("10.00")

    first = apply_events([opened, deposit, deposit], path=BROKER)
    second = apply_events([deposit, opened], path=REPLICATION)  # a "restart": a new call, another path

    assert len(first.applied) == 2 and first.duplicates == [deposit]
    assert not second.applied and second.duplicates == [deposit, opened]
    assert AccountView.objects.get(account_id=alice.account_id).balance == Decimal("10.00")
    assert _total("NOK").total_balance == Decimal("10.00")
    assert StatementLine.objects.filter(account_id=alice.account_id).count() == 1


def test_event_ahead_of_its_predecessor_waits_then_is_applied_in_order() -> None:
    alice = AccountHistory(currency="DKK")
    v1, v2, v3, v4 = alice.opened(), alice.deposited("5.00"), alice.withdrawn("2.00"), alice.deposited("1.00")

    first = apply_events([v1, v3], path=BROKER)
    assert [i.event for i in first.applied] == [v1] and first.parked == [v3]
    assert [(g.applied_version, g.missing_versions, g.pending_versions) for g in _gaps(alice)] == [
        (1, [2], [3])
    ]
    assert AccountView.objects.get(account_id=alice.account_id).version == 1

    again = apply_events([v3, v4], path=BROKER)  # v3 again: already waiting; v4 waits too
    assert again.duplicates == [v3] and again.parked == [v4]

    filled = apply_events([v2], path=REPLICATION)  # the gap is filled from the other path
    assert [(i.event, i.path) for i in filled.applied] == [
        (v2, "replication"),
        (v3, "broker"),
        (v4, "broker"),
    ]
    view = AccountView.objects.get(account_id=alice.account_id)
    assert (view.version, view.balance) == (4, Decimal("4.00"))
    assert [row[3] for row in _statement(alice)] == [Decimal("5.00"), Decimal("3.00"), Decimal("4.00")]
    assert not PendingEvent.objects.filter(aggregate_id=alice.account_id).exists()
    assert _gaps(alice) == []


def test_out_of_order_within_one_batch_is_reordered() -> None:
    alice = AccountHistory(currency="PLN")
    v1, v2, v3 = alice.opened(), alice.deposited("7.00"), alice.withdrawn("7.00")

    outcome = apply_events([v3, v2, v1], path=BROKER)

    assert [i.event for i in outcome.applied] == [v1, v2, v3]
    assert AccountView.objects.get(account_id=alice.account_id).balance == Decimal("0.00")


def test_failing_handler_is_isolated_by_its_savepoint() -> None:
    alice, bob = AccountHistory(currency="CZK"), AccountHistory(currency="CZK")
    bad = alice.opened()
    bad = type(bad)(
        **{**_fields(bad), "data": {"owner": "x" * 101, "currency": "CZK"}}
    )  # too long for the column
    good = [bob.opened(), bob.deposited("3.00")]

    outcome = apply_events([good[0], bad, good[1]], path=BROKER)

    assert [i.event for i in outcome.applied] == good
    assert [(f.event, f.reason, f.from_pending) for f in outcome.failed] == [(bad, "handler_failed", False)]
    assert "DataError" in outcome.failed[0].detail
    assert not AccountView.objects.filter(account_id=alice.account_id).exists()
    assert not AppliedEvent.objects.filter(event_id=bad.event_id).exists()
    assert AccountView.objects.get(account_id=bob.account_id).balance == Decimal("3.00")
    assert _total("CZK").accounts == 1


def test_money_on_an_account_never_opened_fails_and_changes_nothing() -> None:
    ghost = AccountHistory(currency="HUF")
    ghost.version = 0
    deposit = ghost.deposited("1.00")  # version 1, but not an AccountOpened

    outcome = apply_events([deposit], path=BROKER)

    assert outcome.failed[0].reason == "handler_failed" and "not projected" in outcome.failed[0].detail
    assert not StatementLine.objects.filter(account_id=ghost.account_id).exists()
    assert _total("HUF") is None


def test_money_event_failing_in_a_run_of_many_fails_alone() -> None:
    """Money events of a batch are applied together; one that cannot be applied must not take the others
    with it, and each line's balance must be the one after it, as if applied one by one."""
    alice, bob, ghost = AccountHistory(currency="PLN"), AccountHistory(currency="PLN"), AccountHistory()
    ghost.version = 0
    opened = [alice.opened(), bob.opened()]
    apply_events(opened, path=BROKER)
    run = [alice.deposited("10.00"), bob.deposited("7.00"), ghost.deposited("1.00"), alice.withdrawn("2.50")]
    run += [bob.deposited("0.01"), alice.deposited("0.50")]

    outcome = apply_events(run, path=BROKER)

    assert [f.event for f in outcome.failed] == [run[2]]
    assert [i.event for i in outcome.applied] == [e for e in run if e is not run[2]]
    assert [line[3] for line in _statement(alice)] == [Decimal("10.00"), Decimal("7.50"), Decimal("8.00")]
    assert [line[3] for line in _statement(bob)] == [Decimal("7.00"), Decimal("7.01")]
    a = AccountView.objects.get(account_id=alice.account_id)
    assert (a.balance, a.version, a.updated_at) == (Decimal("8.00"), 4, run[5].occurred_at)
    assert _total("PLN").total_balance == Decimal("15.01")


@pytest.mark.parametrize("amount", ["abc", "-1.00", "0", "1.001", "NaN", "Infinity"])
def test_amount_that_would_corrupt_balances_fails(amount: str) -> None:
    alice = AccountHistory(currency="RON")
    opened, bad, good = alice.opened(), alice.deposited(amount), None
    alice.version -= 1
    good = alice.deposited("2.00")  # a corrected event for the same version

    outcome = apply_events([opened, bad, good], path=BROKER)

    assert [f.event for f in outcome.failed] == [bad]
    assert [i.event for i in outcome.applied] == [opened, good]
    assert AccountView.objects.get(account_id=alice.account_id).balance == Decimal("2.00")


def test_parked_event_that_fails_when_drained_is_dead_lettered_with_its_body() -> None:
    alice = AccountHistory(currency="BGN")
    v1, v2, v3, v4 = alice.opened(), alice.deposited("5.00"), alice.withdrawn("oops"), alice.deposited("1.00")
    apply_events([v1, v3, v4], path=BROKER)

    outcome = apply_events([v2], path=BROKER)

    assert [i.event for i in outcome.applied] == [v2]
    assert [(f.event, f.from_pending) for f in outcome.failed] == [(v3, True)]
    assert outcome.failures_to_reject(BROKER) == []  # its message was acknowledged when it was parked
    record = DeadLetter.objects.get(message_id=str(v3.event_id))
    assert (record.reason, record.routing_key, record.event_type) == (
        "handler_failed",
        "account.MoneyWithdrawn",
        "MoneyWithdrawn",
    )
    assert b'"oops"' in bytes(record.body)
    # v4 keeps waiting for v3, and says so.
    assert [(g.applied_version, g.missing_versions, g.pending_versions) for g in _gaps(alice)] == [
        (2, [3], [4])
    ]


def test_parked_events_this_release_cannot_read_are_dead_lettered_with_their_body() -> None:
    """Parked by an older release that understood them: the next version and an older copy alike are
    dead-lettered with their body, and the batch that drains them is applied."""
    alice = AccountHistory(currency="HUF")
    v1, v2, v3, v4 = alice.opened(), alice.deposited("5.00"), alice.deposited("1.00"), alice.deposited("2.00")
    apply_events([v1, v3, v4], path=BROKER)
    copy_id = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE pending_events SET envelope = jsonb_set(envelope, '{type}', '"MoneyInvented"')
                WHERE event_id = %s""",
            [str(v3.event_id)],
        )
        cursor.execute(
            """INSERT INTO pending_events
                      (event_id, aggregate_id, version, position, type, occurred_at, envelope, path,
                       received_at)
               SELECT %(copy)s, aggregate_id, 1, position, type, occurred_at,
                      jsonb_set(envelope, '{event_id}', to_jsonb(%(copy)s::text)), path, received_at
                 FROM pending_events WHERE event_id = %(v3)s""",
            {"copy": str(copy_id), "v3": str(v3.event_id)},
        )

    outcome = apply_events([v2], path=BROKER)

    assert [i.event for i in outcome.applied] == [v2]
    assert not outcome.failed and not outcome.duplicates
    assert sorted(outcome.recorded_only) == ["unknown_type", "unknown_type"]
    records = DeadLetter.objects.filter(message_id__in=[str(copy_id), str(v3.event_id)])
    assert sorted((r.message_id, r.reason, r.event_type) for r in records) == sorted(
        [(str(copy_id), "unknown_type", "MoneyInvented"), (str(v3.event_id), "unknown_type", "MoneyInvented")]
    )
    assert all(b'"MoneyInvented"' in bytes(r.body) for r in records)
    # v4 keeps waiting for v3, and says so.
    assert [(g.applied_version, g.missing_versions, g.pending_versions) for g in _gaps(alice)] == [
        (2, [3], [4])
    ]


def test_unknown_path_is_refused() -> None:
    with pytest.raises(ValueError):
        apply_events([AccountHistory().opened()], path="carrier-pigeon")


def test_registry_has_a_handler_for_every_contract_event_type() -> None:
    from cqrs_common.events import EVENT_TYPES

    assert set(handlers.PROJECTIONS) == set(EVENT_TYPES)


def _gaps(history: AccountHistory):
    return [g for g in pending_gaps() if g.account_id == history.account_id]


def _fields(event) -> dict:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}


def _uuid(text: str):
    import uuid

    return uuid.UUID(text)


def test_event_id_reused_for_another_version_fails_alone() -> None:
    alice, bob = AccountHistory(currency="MXN"), AccountHistory(currency="MXN")
    opened = alice.opened()
    apply_events([opened], path=BROKER)
    reused = alice.deposited("1.00")
    reused = type(reused)(**{**_fields(reused), "event_id": opened.event_id})
    other = bob.opened()

    outcome = apply_events([reused, other], path=BROKER)

    assert [i.event for i in outcome.applied] == [other]
    assert [(f.event, f.reason) for f in outcome.failed] == [(reused, "handler_failed")]
    assert "IntegrityError" in outcome.failed[0].detail
    assert AccountView.objects.get(account_id=alice.account_id).balance == Decimal("0.00")


def test_an_event_the_database_cannot_park_fails_alone_and_the_batch_is_applied() -> None:
    """An event built in code, past every check of `from_dict`: its version does not fit the parked column."""
    alice, bob = AccountHistory(), AccountHistory()
    opened, deposit = alice.opened(), alice.deposited("5.00")
    bob_opened = bob.opened()
    ahead = dataclasses.replace(bob.deposited("1.00"), aggregate_version=2**31)

    outcome = apply_events([bob_opened, opened, ahead, deposit], path=REPLICATION)

    assert [item.event for item in outcome.applied if item.event.aggregate_id == alice.account_id] == [
        opened,
        deposit,
    ]
    assert [(f.event, f.reason) for f in outcome.failed] == [(ahead, "park_failed")]
    assert AccountView.objects.get(account_id=alice.account_id).balance == Decimal("5.00")
    assert not PendingEvent.objects.filter(aggregate_id=bob.account_id).exists()
    record = DeadLetter.objects.get(message_id=str(ahead.event_id))
    assert (record.reason, record.message_id) == ("park_failed", str(ahead.event_id))
    assert "out of range" in record.detail and record.body is not None  # the replication path's only copy
