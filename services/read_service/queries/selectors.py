"""Reads for the API: plain queries over the read models, one function per question.

Nothing here writes, waits or knows HTTP; views call these and serialise what comes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from django.db import connection
from django.db.models import QuerySet

from read_service.projections.dead_letters import dead_letters_open_count
from read_service.projections.event_log.subscription import SubscriptionStatus, subscription_status
from read_service.projections.models import AccountView, CurrencyTotal, ProjectorState, StatementLine

ACCOUNT_FIELDS = (
    "account_id",
    "owner",
    "currency",
    "balance",
    "status",
    "version",
    "opened_at",
    "updated_at",
)
STATEMENT_FIELDS = (
    "version",
    "kind",
    "amount",
    "balance_after",
    "counterparty",
    "transfer_id",
    "reference",
    "occurred_at",
)


def account_get(*, account_id: UUID) -> dict | None:
    return AccountView.objects.filter(account_id=account_id).values(*ACCOUNT_FIELDS).first()


def account_version_get(*, account_id: UUID) -> int | None:
    """The projected version of an account (None until AccountOpened is applied)."""
    return AccountView.objects.filter(account_id=account_id).values_list("version", flat=True).first()


def account_list(*, owner: str | None = None, status: str | None = None) -> QuerySet:
    """Accounts in the order they were opened (an index covers each filter with this order)."""
    accounts = AccountView.objects.all()
    if owner is not None:
        accounts = accounts.filter(owner=owner)
    if status is not None:
        accounts = accounts.filter(status=status)
    return accounts.order_by("opened_at", "account_id").values(*ACCOUNT_FIELDS)


def account_statement(*, account_id: UUID) -> QuerySet:
    """Money movements of an account, oldest first."""
    return StatementLine.objects.filter(account_id=account_id).order_by("version").values(*STATEMENT_FIELDS)


@dataclass(frozen=True, slots=True)
class Stats:
    accounts: int
    open_accounts: int
    total_balance: dict[str, Decimal]
    events_applied: int


def stats_get() -> Stats:
    totals = list(CurrencyTotal.objects.order_by("currency"))
    return Stats(
        accounts=sum(t.accounts for t in totals),
        open_accounts=sum(t.open_accounts for t in totals),
        total_balance={t.currency: t.total_balance for t in totals},
        events_applied=_state().events_applied,
    )


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    mode: str
    events_applied: int
    last_event_at: datetime | None
    lag_seconds: float
    dead_lettered: int
    replication: SubscriptionStatus  # beyond the contract: the subscription that feeds the fallback path


def projection_status_get() -> ProjectionStatus:
    """Lag is the end-to-end lag of the newest applied event (commit on the write side to applied here) or,
    when events wait for a predecessor, how long the oldest of them has been waiting since it occurred,
    whichever is larger."""
    state = _state()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT greatest(
                coalesce(extract(epoch FROM %s::timestamptz - %s::timestamptz), 0),
                coalesce(extract(epoch FROM now() - (SELECT min(occurred_at) FROM pending_events)), 0),
                0)
            """,
            [state.last_applied_at, state.last_event_at],
        )
        lag = float(cursor.fetchone()[0])
    return ProjectionStatus(
        mode=state.mode,
        events_applied=state.events_applied,
        last_event_at=state.last_event_at,
        lag_seconds=round(lag, 3),
        dead_lettered=dead_letters_open_count(),
        replication=subscription_status(),
    )


def _state() -> ProjectorState:
    """The projector's row, or its defaults before the first event was applied."""
    return ProjectorState.objects.filter(id=1).first() or ProjectorState()
