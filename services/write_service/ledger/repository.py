"""Maps the Account aggregate to its rows: `accounts` (current state) and `events` (what happened).

Reads for a command lock the rows (`SELECT ... FOR UPDATE`) so concurrent commands on one account run one
after the other; saving writes the new state and appends the events in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from write_service.ledger import models
from write_service.ledger.domain import (
    Account,
    AccountNotFound,
    AccountStatus,
    DomainEvent,
    event_from_stored,
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


def account_get_for_update(account_id: UUID) -> Account:
    """The account, locked until the transaction ends; `AccountNotFound` if there is none."""
    row = models.Account.objects.select_for_update().filter(pk=account_id).first()
    if row is None:
        raise AccountNotFound(account_id)
    return to_domain(row)


def accounts_get_for_update(*account_ids: UUID) -> dict[UUID, Account]:
    """Several accounts locked in ascending id order, whatever order they are asked in.

    Two transfers A->B and B->A both lock min(A, B) first, so they queue instead of deadlocking.
    PostgreSQL locks the rows as the sorted result is produced.
    """
    wanted = sorted(set(account_ids))
    rows = models.Account.objects.select_for_update().filter(pk__in=wanted).order_by("pk")
    found = {row.id: to_domain(row) for row in rows}
    for account_id in wanted:
        if account_id not in found:
            raise AccountNotFound(account_id)
    return found


def account_add(account: Account, events: Sequence[DomainEvent], meta: EventMetadata) -> None:
    """Inserts a newly opened account and its first events."""
    models.Account.objects.create(
        id=account.id,
        owner=account.owner,
        currency=account.currency,
        balance=account.balance,
        status=account.status.value,
        version=account.version,
        opened_at=meta.occurred_at,
        updated_at=meta.occurred_at,
    )
    _append(account, events, meta)


def account_save(account: Account, events: Sequence[DomainEvent], meta: EventMetadata) -> None:
    """Writes the state a command reached and appends the events that led there.

    The caller holds the row lock, so the version read is still current; the version in the WHERE clause
    and the unique (aggregate_id, aggregate_version) index would refuse a lost update anyway.
    """
    previous_version = account.version - len(events)
    updated = models.Account.objects.filter(pk=account.id, version=previous_version).update(
        balance=account.balance,
        status=account.status.value,
        version=account.version,
        updated_at=meta.occurred_at,
    )
    if updated != 1:
        raise RuntimeError(f"account {account.id} changed under its row lock")
    _append(account, events, meta)


def _append(account: Account, events: Sequence[DomainEvent], meta: EventMetadata) -> None:
    first_version = account.version - len(events) + 1
    models.Event.objects.bulk_create(
        [
            models.Event(
                aggregate_id=account.id,
                aggregate_version=first_version + offset,
                event_type=event.type,
                schema_version=1,
                data=event.data(),
                occurred_at=meta.occurred_at,
                correlation_id=meta.correlation_id,
                causation_id=meta.causation_id,
            )
            for offset, event in enumerate(events)
        ]
    )


def account_history(account_id: UUID) -> list[DomainEvent]:
    """Every event of one account, oldest first (for folding, e.g. to verify the stored state)."""
    stored = models.Event.objects.filter(aggregate_id=account_id).order_by("aggregate_version")
    return [event_from_stored(event.event_type, event.data) for event in stored]
