"""Projection handlers: one small function per event type, routed through the one registry `HANDLERS`.

Each handler is a function of (read-DB cursor, event) that changes the read models with one set-based SQL
statement. Handlers know nothing of duplicates, ordering or transactions: the apply step (`apply.py`) calls a
handler only for the next version of an account, inside a savepoint. A handler raises `ProjectionError` when
the event cannot be projected; the apply step then rolls back that event alone.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from cqrs_common.events import EventEnvelope

Handler = Callable[[Any, EventEnvelope], None]

_CENT = Decimal("0.01")


class ProjectionError(Exception):
    """The event is well formed but cannot be projected (e.g. money moved on an account never opened)."""


def account_opened(cursor: Any, event: EventEnvelope) -> None:
    cursor.execute(
        """
        WITH account AS (
            INSERT INTO account_view
                   (account_id, owner, currency, balance, status, version, opened_at, updated_at)
            VALUES (%(account_id)s, %(owner)s, %(currency)s, 0, 'open', %(version)s, %(at)s, %(at)s)
            RETURNING currency
        )
        INSERT INTO currency_totals AS t (currency, total_balance, accounts, open_accounts)
        SELECT currency, 0, 1, 1 FROM account
        ON CONFLICT (currency) DO UPDATE SET accounts = t.accounts + 1, open_accounts = t.open_accounts + 1
        """,
        {
            "account_id": event.aggregate_id,
            "owner": str(event.data["owner"]),
            "currency": str(event.data["currency"]),
            "version": event.aggregate_version,
            "at": event.occurred_at,
        },
    )


def money_deposited(cursor: Any, event: EventEnvelope) -> None:
    _move_money(cursor, event, kind="deposit", sign=1)


def money_withdrawn(cursor: Any, event: EventEnvelope) -> None:
    _move_money(cursor, event, kind="withdrawal", sign=-1)


def transfer_debited(cursor: Any, event: EventEnvelope) -> None:
    _move_money(
        cursor,
        event,
        kind="transfer_out",
        sign=-1,
        counterparty=_uuid(event.data["to_account"]),
        transfer_id=_uuid(event.data["transfer_id"]),
    )


def transfer_credited(cursor: Any, event: EventEnvelope) -> None:
    _move_money(
        cursor,
        event,
        kind="transfer_in",
        sign=1,
        counterparty=_uuid(event.data["from_account"]),
        transfer_id=_uuid(event.data["transfer_id"]),
    )


def account_closed(cursor: Any, event: EventEnvelope) -> None:
    cursor.execute(
        """
        WITH account AS (
            UPDATE account_view SET status = 'closed', version = %(version)s, updated_at = %(at)s
             WHERE account_id = %(account_id)s AND status = 'open'
            RETURNING currency
        ), total AS (
            UPDATE currency_totals t SET open_accounts = t.open_accounts - 1
              FROM account WHERE t.currency = account.currency
        )
        SELECT count(*) FROM account
        """,
        {"account_id": event.aggregate_id, "version": event.aggregate_version, "at": event.occurred_at},
    )
    if cursor.fetchone()[0] != 1:
        raise ProjectionError(f"account {event.aggregate_id} is not projected or not open")


# The whole movement in one statement: balance, statement line (with the balance after it) and the total.
_MOVE_MONEY = """
    WITH account AS (
        UPDATE account_view
           SET balance = balance + %(delta)s, version = %(version)s, updated_at = %(at)s
         WHERE account_id = %(account_id)s
        RETURNING account_id, currency, balance
    ), line AS (
        INSERT INTO statement_lines
               (account_id, version, kind, amount, balance_after, counterparty, transfer_id, occurred_at)
        SELECT account_id, %(version)s, %(kind)s, %(amount)s, balance,
               %(counterparty)s, %(transfer_id)s, %(at)s
          FROM account
    ), total AS (
        UPDATE currency_totals t SET total_balance = t.total_balance + %(delta)s
          FROM account WHERE t.currency = account.currency
    )
    SELECT count(*) FROM account
"""


def _move_money(
    cursor: Any,
    event: EventEnvelope,
    *,
    kind: str,
    sign: int,
    counterparty: UUID | None = None,
    transfer_id: UUID | None = None,
) -> None:
    amount = _amount(event.data["amount"])
    cursor.execute(
        _MOVE_MONEY,
        {
            "account_id": event.aggregate_id,
            "delta": amount * sign,
            "amount": amount,
            "kind": kind,
            "version": event.aggregate_version,
            "counterparty": counterparty,
            "transfer_id": transfer_id,
            "at": event.occurred_at,
        },
    )
    if cursor.fetchone()[0] != 1:
        raise ProjectionError(f"account {event.aggregate_id} is not projected")


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


def _uuid(raw: Any) -> UUID:
    try:
        return UUID(str(raw))
    except ValueError as exc:
        raise ProjectionError(f"{raw!r} is not a UUID") from exc


HANDLERS: dict[str, Handler] = {
    "AccountOpened": account_opened,
    "MoneyDeposited": money_deposited,
    "MoneyWithdrawn": money_withdrawn,
    "TransferDebited": transfer_debited,
    "TransferCredited": transfer_credited,
    "AccountClosed": account_closed,
}
