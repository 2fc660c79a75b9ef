"""Commands as the previous release wrote them, for the tests and the lab's schema-evolution experiment.

That release stored every deposit as `MoneyDeposited` schema version 1, whose data is `{"amount"}` alone.
A store that has run it holds such rows for good (the `events` table is append-only), so a test or an
experiment that wants the history a real upgrade leaves behind writes them here, straight into the write
database, the way that release's `services.account_deposit` did: the account row locked, moved on and the
event appended in one transaction, on the write side's own role. Nothing else of that release is kept.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import psycopg2

SCHEMA_VERSION = 1  # MoneyDeposited as that release wrote it

# One statement, as that release's: the account row moved on (only if it is open), the event appended to
# the row it wrote. The INSERT's statement trigger sends `NOTIFY cqrs_events`, so the relay publishes it
# as it publishes any other.
_DEPOSIT = """
WITH written AS (
    UPDATE accounts SET balance = balance + %(amount)s, version = version + 1, updated_at = %(at)s
     WHERE id = %(account_id)s AND status = 'open'
    RETURNING id, version, balance
), appended AS (
    INSERT INTO events (event_id, aggregate_type, aggregate_id, aggregate_version, event_type,
                        schema_version, data, occurred_at, correlation_id, causation_id)
    SELECT %(event_id)s, 'account', written.id, written.version, 'MoneyDeposited', %(schema_version)s,
           jsonb_build_object('amount', %(amount_text)s::text), %(at)s, %(correlation_id)s, NULL
      FROM written
    RETURNING position, aggregate_version
)
SELECT appended.position, appended.aggregate_version, written.balance FROM appended, written
"""


@dataclass(frozen=True, slots=True)
class StoredDeposit:
    event_id: UUID
    position: int
    version: int
    balance: Decimal


def deposit_v1(
    write_database_url: str, account_id: UUID, amount: str, *, correlation_id: str = "previous-release"
) -> StoredDeposit:
    """Deposits `amount` (at most 2 decimals, more than 0) as the previous release did; `LookupError` when
    the account does not exist or is closed."""
    value = Decimal(amount)
    if not value.is_finite() or value <= 0 or value != value.quantize(Decimal("0.01")):
        raise ValueError(f"amount {amount!r} is not a positive amount with at most 2 decimals")
    event_id = uuid.uuid4()
    connection = psycopg2.connect(write_database_url, application_name="previous-release")
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(
                _DEPOSIT,
                {
                    "account_id": str(account_id),
                    "amount": value,
                    "amount_text": f"{value:.2f}",
                    "at": datetime.now(UTC),
                    "event_id": str(event_id),
                    "schema_version": SCHEMA_VERSION,
                    "correlation_id": correlation_id,
                },
            )
            row = cursor.fetchone()
    finally:
        connection.close()
    if row is None:
        raise LookupError(f"account {account_id} does not exist or is closed")
    position, version, balance = row
    return StoredDeposit(event_id, position, version, balance)
