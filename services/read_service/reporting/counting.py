"""A batch of events counted into the daily totals in ONE read-database transaction, each event once.

The event ids go into `reporting_counted_events` first (`ON CONFLICT DO NOTHING`); only the ids that
statement inserted are counted, in the same transaction as the totals they change. So an event that comes
twice, once from the log and once from the queue around the switch, or again after a crash before the
acknowledgement, is counted once whatever the path, and a crash anywhere leaves both or neither.

A money event needs its account's currency, which its AccountOpened brings: from this batch, from
`reporting_accounts`, or else from the log itself (the replicated `events` table), which holds every event
the write side committed. An event whose account the log does not know either cannot be counted: it is
returned as `unknown_account`, uncounted, for the subscriber to dead-letter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date
from decimal import Decimal
from uuid import UUID

from django.db import connection, transaction

from cqrs_common.events import EventEnvelope
from cqrs_common.upcasting import data_sql
from read_service.projections.event_log.rows import REPLICA_TABLE
from read_service.reporting.models import HISTORY, LIVE_PATH

OPENED = "AccountOpened"
DEPOSITED = "MoneyDeposited"
WITHDRAWN = "MoneyWithdrawn"
DEBITED = "TransferDebited"


@dataclass
class Delta:
    accounts_opened: int = 0
    deposits: int = 0
    deposited: Decimal = Decimal(0)
    withdrawals: int = 0
    withdrawn: Decimal = Decimal(0)
    transfers: int = 0
    transferred: Decimal = Decimal(0)
    largest_movement: Decimal = Decimal(0)
    events: int = 0

    def add(self, event: EventEnvelope) -> None:
        self.events += 1
        amount = Decimal(str(event.data.get("amount", "0")))
        if event.type == OPENED:
            self.accounts_opened += 1
        elif event.type == DEPOSITED:
            self.deposits += 1
            self.deposited += amount
        elif event.type == WITHDRAWN:
            self.withdrawals += 1
            self.withdrawn += amount
        elif event.type == DEBITED:
            self.transfers += 1
            self.transferred += amount
        else:
            return  # a credit (its debit counted the transfer) or a closing moves no new money
        if event.type != OPENED:
            self.largest_movement = max(self.largest_movement, amount)


@dataclass
class Counted:
    """What one batch did: the events it counted, the duplicates it skipped, those it could not count."""

    counted: list[EventEnvelope] = field(default_factory=list)
    duplicates: list[EventEnvelope] = field(default_factory=list)
    unknown_account: list[EventEnvelope] = field(default_factory=list)


def events_count(
    subscription: str,
    events: Sequence[EventEnvelope],
    *,
    path: str,
    replica_seq: int | None = None,
) -> Counted:
    """Counts `events` (in the order given) once each; with `replica_seq`, moves the subscription's cursor
    in the log there in the same transaction (the catch-up's progress)."""
    unique = list({event.event_id: event for event in events}.values())
    result = Counted()
    with transaction.atomic():
        currencies = _currencies(subscription, unique)
        countable = [e for e in unique if e.aggregate_id in currencies]
        result.unknown_account = [e for e in unique if e.aggregate_id not in currencies]
        new_ids = _claim(subscription, countable, path)
        result.counted = [e for e in countable if e.event_id in new_ids]
        result.duplicates = [e for e in countable if e.event_id not in new_ids]
        _accounts_record(subscription, [e for e in result.counted if e.type == OPENED])
        _totals_add(subscription, result.counted, currencies)
        _state_advance(subscription, result, path, replica_seq)
    return result


def _currencies(subscription: str, events: list[EventEnvelope]) -> dict[UUID, str]:
    found = {e.aggregate_id: str(e.data["currency"]) for e in events if e.type == OPENED}
    wanted = [str(a) for a in {e.aggregate_id for e in events} - found.keys()]
    if not wanted:
        return found
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT account_id, currency FROM reporting_accounts"
            " WHERE subscription = %s AND account_id = ANY(%s::uuid[])",
            [subscription, wanted],
        )
        found |= {_uuid(account): currency for account, currency in cursor.fetchall()}
        missing = [a for a in wanted if UUID(a) not in found]
        if missing:
            cursor.execute(  # the row's data read as every reader reads it (upcasting.py)
                f"SELECT e.aggregate_id, {data_sql('e')} ->> 'currency' FROM {REPLICA_TABLE} e"
                " WHERE e.event_type = %s AND e.aggregate_id = ANY(%s::uuid[])",
                [OPENED, missing],
            )
            found |= {_uuid(account): currency for account, currency in cursor.fetchall()}
    return found


def _claim(subscription: str, events: list[EventEnvelope], path: str) -> set[UUID]:
    """Inserts the events' ids; returns those that were not there yet (the ones to count)."""
    if not events:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO reporting_counted_events (subscription, event_id, position, path, counted_at)
            SELECT %s, e.event_id, e.position, %s, clock_timestamp()
              FROM unnest(%s::uuid[], %s::bigint[]) AS e(event_id, position)
            ON CONFLICT DO NOTHING
            RETURNING event_id
            """,
            [subscription, path, [str(e.event_id) for e in events], [e.position for e in events]],
        )
        return {_uuid(event_id) for (event_id,) in cursor.fetchall()}


def _accounts_record(subscription: str, opened: list[EventEnvelope]) -> None:
    if not opened:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO reporting_accounts (subscription, account_id, currency)
            SELECT %s, a.account_id, a.currency FROM unnest(%s::uuid[], %s::text[]) AS a(account_id, currency)
            ON CONFLICT DO NOTHING
            """,
            [subscription, [str(e.aggregate_id) for e in opened], [e.data["currency"] for e in opened]],
        )


def _totals_add(subscription: str, events: list[EventEnvelope], currencies: dict[UUID, str]) -> None:
    deltas: dict[tuple[date, str], Delta] = defaultdict(Delta)
    for event in events:
        deltas[(event.occurred_at.astimezone(UTC).date(), currencies[event.aggregate_id])].add(event)
    if not deltas:
        return
    rows = [(subscription, day, currency, *vars(delta).values()) for (day, currency), delta in deltas.items()]
    with connection.cursor() as cursor:
        # Sorted, so two transactions adding to the same days lock their rows in the same order.
        cursor.executemany(
            """
            INSERT INTO reporting_daily_totals AS t (subscription, day, currency, accounts_opened, deposits,
                   deposited, withdrawals, withdrawn, transfers, transferred, largest_movement, events)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (subscription, day, currency) DO UPDATE SET
                accounts_opened = t.accounts_opened + EXCLUDED.accounts_opened,
                deposits = t.deposits + EXCLUDED.deposits,
                deposited = t.deposited + EXCLUDED.deposited,
                withdrawals = t.withdrawals + EXCLUDED.withdrawals,
                withdrawn = t.withdrawn + EXCLUDED.withdrawn,
                transfers = t.transfers + EXCLUDED.transfers,
                transferred = t.transferred + EXCLUDED.transferred,
                largest_movement = greatest(t.largest_movement, EXCLUDED.largest_movement),
                events = t.events + EXCLUDED.events
            """,
            sorted(rows, key=lambda row: (row[1], row[2])),
        )


def _state_advance(subscription: str, result: Counted, path: str, replica_seq: int | None) -> None:
    history = len(result.counted) if path == HISTORY else 0
    live = len(result.counted) - history
    duplicates = len(result.duplicates) if path == LIVE_PATH else 0
    last = max((e.occurred_at for e in result.counted), default=None)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE reporting_subscriptions
               SET replica_seq = coalesce(%s, replica_seq),
                   history_events = history_events + %s,
                   live_events = live_events + %s,
                   live_duplicates = live_duplicates + %s,
                   last_event_at = greatest(last_event_at, %s),
                   updated_at = clock_timestamp()
             WHERE subscription = %s
            """,
            [replica_seq, history, live, duplicates, last, subscription],
        )


def _uuid(value: object) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))
