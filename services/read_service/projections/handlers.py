"""Projection handlers: one small function per event type, routed through the one registry `PROJECTIONS`.

Each handler is a function of (read-DB cursor, event) that changes the read models with one set-based SQL
statement. Handlers know nothing of duplicates, ordering or transactions: the apply step (`apply.py`) calls a
handler only for the next version of an account. A handler raises `ProjectionError` when the event cannot be
projected; the apply step then rolls back that event alone.

Money events, most of the traffic, are a `Movement` of their account (the registry names the function that
makes it) and are written by ONE statement, `move_money`, for one movement or many: their handlers call it
with their event's movement alone, and the apply step gathers a run of them and applies the whole run at once,
one round trip instead of one per event. If a run fails, the apply step redoes the batch event by event with
the handlers, so failures are found and isolated exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from cqrs_common.events import EventEnvelope
from read_service.projections import apply_sql as sql

Handler = Callable[[Any, EventEnvelope], None]

_CENT = Decimal("0.01")
REFERENCE_MAX_LENGTH = 140  # the write side's bound (CONTRACT.md, the deposit's body)


class ProjectionError(Exception):
    """The event is well formed but cannot be projected (e.g. money moved on an account never opened)."""


def account_opened(cursor: Any, event: EventEnvelope) -> None:
    cursor.execute(
        sql.OPEN_ACCOUNT,
        {
            "account_id": event.aggregate_id,
            "owner": str(event.data["owner"]),
            "currency": str(event.data["currency"]),
            "version": event.aggregate_version,
            "at": event.occurred_at,
        },
    )


def money_deposited(cursor: Any, event: EventEnvelope) -> None:
    move_money(cursor, [deposit(event)])


def money_withdrawn(cursor: Any, event: EventEnvelope) -> None:
    move_money(cursor, [withdrawal(event)])


def transfer_debited(cursor: Any, event: EventEnvelope) -> None:
    move_money(cursor, [transfer_out(event)])


def transfer_credited(cursor: Any, event: EventEnvelope) -> None:
    move_money(cursor, [transfer_in(event)])


def account_closed(cursor: Any, event: EventEnvelope) -> None:
    cursor.execute(
        sql.CLOSE_ACCOUNT,
        {"account_id": event.aggregate_id, "version": event.aggregate_version, "at": event.occurred_at},
    )
    if cursor.fetchone()[0] != 1:
        raise ProjectionError(f"account {event.aggregate_id} is not projected or not open")


@dataclass(frozen=True, slots=True)
class Movement:
    """What a money event does to its account: validated, ready for SQL."""

    account_id: UUID
    version: int
    kind: str
    amount: Decimal
    delta: Decimal  # signed
    occurred_at: datetime
    counterparty: UUID | None = None
    transfer_id: UUID | None = None
    reference: str | None = None  # a deposit's


def deposit(event: EventEnvelope) -> Movement:
    return _movement(event, "deposit", 1, reference=_reference(event.data["reference"]))


def withdrawal(event: EventEnvelope) -> Movement:
    return _movement(event, "withdrawal", -1)


def transfer_out(event: EventEnvelope) -> Movement:
    data = event.data
    return _movement(event, "transfer_out", -1, _uuid(data["to_account"]), _uuid(data["transfer_id"]))


def transfer_in(event: EventEnvelope) -> Movement:
    data = event.data
    return _movement(event, "transfer_in", 1, _uuid(data["from_account"]), _uuid(data["transfer_id"]))


def _movement(
    event: EventEnvelope,
    kind: str,
    sign: int,
    counterparty: UUID | None = None,
    transfer_id: UUID | None = None,
    *,
    reference: str | None = None,
) -> Movement:
    amount = _amount(event.data["amount"])
    return Movement(
        event.aggregate_id,
        event.aggregate_version,
        kind,
        amount,
        amount * sign,
        event.occurred_at,
        counterparty,
        transfer_id,
        reference,
    )


def move_money(cursor: Any, movements: Sequence[Movement]) -> None:
    """Applies movements (in version order per account, each the next version) in one round trip; raises
    `ProjectionError`, having changed nothing the caller keeps, if any account is not projected."""
    if not movements:
        return
    cursor.execute(sql.MOVE_MONEY, move_money_params(movements))
    check_projected(movements, cursor.fetchone()[0])


def move_money_params(movements: Sequence[Movement]) -> dict[str, Any]:
    """The parameters of `sql.MOVE_MONEY_CTES`."""
    return {
        "account_ids": [str(m.account_id) for m in movements],
        "versions": [m.version for m in movements],
        "kinds": [m.kind for m in movements],
        "amounts": [m.amount for m in movements],
        "deltas": [m.delta for m in movements],
        "counterparties": [None if m.counterparty is None else str(m.counterparty) for m in movements],
        "transfer_ids": [None if m.transfer_id is None else str(m.transfer_id) for m in movements],
        "references": [m.reference for m in movements],
        "at": [m.occurred_at for m in movements],
    }


def check_projected(movements: Sequence[Movement], projected: int) -> None:
    """`ProjectionError` unless every account of the movements was updated (`projected` of them were)."""
    accounts = {m.account_id for m in movements}
    if projected == len(accounts):
        return
    if len(accounts) == 1:
        raise ProjectionError(f"account {movements[0].account_id} is not projected")
    raise ProjectionError(f"{len(accounts) - projected} of {len(accounts)} accounts are not projected")


def _amount(raw: Any) -> Decimal:
    """A positive amount with at most 2 decimals; anything else would corrupt balances and totals."""
    try:
        amount = Decimal(str(raw))
        valid = amount.is_finite() and amount > 0 and amount == amount.quantize(_CENT)
    except InvalidOperation:
        valid = False
    if not valid:
        raise ProjectionError(f"amount {raw!r} is not a positive amount with at most 2 decimals")
    return amount


def _reference(raw: Any) -> str | None:
    """None or 1..140 characters, as the write side takes them (`from_dict` made sure it is storable)."""
    if raw is None or (isinstance(raw, str) and 1 <= len(raw) <= REFERENCE_MAX_LENGTH):
        return raw
    raise ProjectionError(
        f"reference {raw!r:.100} is neither null nor 1 to {REFERENCE_MAX_LENGTH} characters"
    )


def _uuid(raw: Any) -> UUID:
    try:
        return UUID(str(raw))
    except ValueError as exc:
        raise ProjectionError(f"{raw!r} is not a UUID") from exc


@dataclass(frozen=True, slots=True)
class Projection:
    """How an event type changes the read models: its handler and, for a money event, its movement (what
    the apply step gathers into a run instead of calling the handler)."""

    handler: Handler
    movement: Callable[[EventEnvelope], Movement] | None = None


PROJECTIONS: dict[str, Projection] = {
    "AccountOpened": Projection(account_opened),
    "MoneyDeposited": Projection(money_deposited, deposit),
    "MoneyWithdrawn": Projection(money_withdrawn, withdrawal),
    "TransferDebited": Projection(transfer_debited, transfer_out),
    "TransferCredited": Projection(transfer_credited, transfer_in),
    "AccountClosed": Projection(account_closed),
}
