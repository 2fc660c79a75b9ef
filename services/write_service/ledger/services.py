"""The write side's commands, one function each (`<entity>_<action>`, keyword-only, typed).

Each runs in ONE transaction: lock the account row(s), let the domain decide, write the new state and
append the events to `events` (the event store and the outbox the relay publishes from). A `DomainError`
rolls the transaction (or, inside a caller's transaction, the savepoint) back, so a refused command writes
nothing. Every command logs one line: `command_handled`, or `command_rejected` with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from cqrs_common.logging import get_logger
from write_service.ledger import repository
from write_service.ledger.domain import Account, DomainError, DomainEvent, transfer
from write_service.ledger.domain.currencies import DEFAULT_CURRENCY
from write_service.ledger.repository import EventMetadata

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class TransferResult:
    transfer_id: UUID
    source: Account
    target: Account


def account_open(
    *, owner: str, currency: str = DEFAULT_CURRENCY, correlation_id: str, account_id: UUID | None = None
) -> Account:
    account_id = account_id or uuid.uuid4()
    with _handling("open", account_id, correlation_id), transaction.atomic():
        account, events = Account.open(account_id=account_id, owner=owner, currency=currency)
        repository.account_add(account, events, _metadata(correlation_id))
    _handled("open", account, correlation_id)
    return account


def account_deposit(
    *, account_id: UUID, amount: Decimal, expected_version: int | None, correlation_id: str
) -> Account:
    return _account_change(
        "deposit", account_id, expected_version, correlation_id, lambda account: account.deposit(amount)
    )


def account_withdraw(
    *, account_id: UUID, amount: Decimal, expected_version: int | None, correlation_id: str
) -> Account:
    return _account_change(
        "withdraw", account_id, expected_version, correlation_id, lambda account: account.withdraw(amount)
    )


def account_close(*, account_id: UUID, expected_version: int | None, correlation_id: str) -> Account:
    return _account_change("close", account_id, expected_version, correlation_id, Account.close)


def _account_change(
    command: str,
    account_id: UUID,
    expected_version: int | None,
    correlation_id: str,
    decide: Callable[[Account], list[DomainEvent]],
) -> Account:
    """The shape of every single-account command: lock, check If-Match, let the domain decide, save."""
    with _handling(command, account_id, correlation_id), transaction.atomic():
        account = repository.account_get_for_update(account_id)
        account.check_version(expected_version)
        events = decide(account)
        repository.account_save(account, events, _metadata(correlation_id))
    _handled(command, account, correlation_id)
    return account


def transfer_create(
    *,
    from_account: UUID,
    to_account: UUID,
    amount: Decimal,
    expected_version: int | None,
    correlation_id: str,
    transfer_id: UUID | None = None,
) -> TransferResult:
    """Moves money between two accounts; `expected_version` is the source account's (its ETag)."""
    transfer_id = transfer_id or uuid.uuid4()
    with _handling("transfer", from_account, correlation_id), transaction.atomic():
        locked = repository.accounts_get_for_update(from_account, to_account)
        source, target = locked[from_account], locked[to_account]
        source.check_version(expected_version)
        debited, credited = transfer(source=source, target=target, amount=amount, transfer_id=transfer_id)
        # Both events carry the transfer as their cause, so the pair can be found from either side.
        meta = _metadata(correlation_id, causation_id=str(transfer_id))
        repository.account_save(source, debited, meta)
        repository.account_save(target, credited, meta)
    _handled("transfer", source, correlation_id, transfer_id=str(transfer_id), to_account=str(target.id))
    return TransferResult(transfer_id=transfer_id, source=source, target=target)


def _metadata(correlation_id: str, causation_id: str | None = None) -> EventMetadata:
    return EventMetadata(occurred_at=timezone.now(), correlation_id=correlation_id, causation_id=causation_id)


@contextmanager
def _handling(command: str, account_id: UUID, correlation_id: str) -> Iterator[None]:
    try:
        yield
    except DomainError as error:
        log.info(
            "command_rejected",
            command=command,
            account_id=str(account_id),
            correlation_id=correlation_id,
            reason=error.reason,
            detail=error.detail,
        )
        raise


def _handled(command: str, account: Account, correlation_id: str, **fields: str) -> None:
    log.info(
        "command_handled",
        command=command,
        account_id=str(account.id),
        version=account.version,
        correlation_id=correlation_id,
        **fields,
    )
