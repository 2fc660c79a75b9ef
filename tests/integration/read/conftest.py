"""Fixtures of the read side's integration tests: the read DB migrated once, events built in a line.

Runs with `--ds=read_service.settings` against the database in READ_DATABASE_URL (created by infra.sh; no
test-database creation) and, for the projector tests, the vhost in RABBITMQ_URL.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command

from cqrs_common.events import EventEnvelope

_positions = itertools.count(1)


@pytest.fixture(scope="session")
def django_db_setup(django_db_blocker: Any) -> None:
    """The database exists already (deploy/local/infra.sh); bring its schema up to date."""
    with django_db_blocker.unblock():
        call_command("migrate", verbosity=0, interactive=False)


def make_event(
    event_type: str,
    account_id: uuid.UUID,
    version: int,
    data: dict[str, Any] | None = None,
    *,
    occurred_at: datetime | None = None,
    correlation_id: str | None = "test-correlation",
) -> EventEnvelope:
    return EventEnvelope(
        event_id=uuid.uuid4(),
        type=event_type,
        aggregate_id=account_id,
        aggregate_version=version,
        position=next(_positions),
        occurred_at=occurred_at or datetime.now(UTC),
        data=data or {},
        correlation_id=correlation_id,
    )


class AccountHistory:
    """Builds the consecutive events of one account, as the write side would emit them."""

    def __init__(self, owner: str = "alice", currency: str = "EUR", start: datetime | None = None) -> None:
        self.account_id = uuid.uuid4()
        self.version = 0
        self.clock = start or datetime.now(UTC) - timedelta(minutes=5)
        self.owner = owner
        self.currency = currency

    def next(self, event_type: str, **data: Any) -> EventEnvelope:
        self.version += 1
        self.clock += timedelta(seconds=1)
        return make_event(event_type, self.account_id, self.version, data, occurred_at=self.clock)

    def opened(self) -> EventEnvelope:
        return self.next("AccountOpened", owner=self.owner, currency=self.currency)

    def deposited(self, amount: str) -> EventEnvelope:
        return self.next("MoneyDeposited", amount=amount)

    def withdrawn(self, amount: str) -> EventEnvelope:
        return self.next("MoneyWithdrawn", amount=amount)

    def closed(self) -> EventEnvelope:
        return self.next("AccountClosed")


def transfer(
    source: AccountHistory, target: AccountHistory, amount: str
) -> tuple[EventEnvelope, EventEnvelope]:
    transfer_id = str(uuid.uuid4())
    debit = source.next(
        "TransferDebited", transfer_id=transfer_id, to_account=str(target.account_id), amount=amount
    )
    credit = target.next(
        "TransferCredited", transfer_id=transfer_id, from_account=str(source.account_id), amount=amount
    )
    return debit, credit


@pytest.fixture
def account() -> Callable[..., AccountHistory]:
    return AccountHistory
