"""The reporting read model against the truth: daily totals computed straight from the write side's events.

`write_side_daily_totals` folds the write database's `events` (the store, whatever was published or
replicated) with the currencies of its `accounts`, in SQL that shares nothing with the subscriber's code;
`reporting_daily_totals` reads what a subscription counted. Equal dicts mean nothing was lost and nothing
counted twice. For the tests of the reporting subscriber and the late-subscriber experiment.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg2

Totals = dict[tuple[str, str], tuple[Any, ...]]  # (UTC day, currency) -> the counts and sums

_MOVES = "('MoneyDeposited', 'MoneyWithdrawn', 'TransferDebited')"
WRITE_SIDE = f"""
SELECT (e.occurred_at AT TIME ZONE 'UTC')::date::text, a.currency,
       count(*) FILTER (WHERE e.event_type = 'AccountOpened'),
       count(*) FILTER (WHERE e.event_type = 'MoneyDeposited'),
       coalesce(sum((e.data->>'amount')::numeric) FILTER (WHERE e.event_type = 'MoneyDeposited'), 0),
       count(*) FILTER (WHERE e.event_type = 'MoneyWithdrawn'),
       coalesce(sum((e.data->>'amount')::numeric) FILTER (WHERE e.event_type = 'MoneyWithdrawn'), 0),
       count(*) FILTER (WHERE e.event_type = 'TransferDebited'),
       coalesce(sum((e.data->>'amount')::numeric) FILTER (WHERE e.event_type = 'TransferDebited'), 0),
       coalesce(max((e.data->>'amount')::numeric) FILTER (WHERE e.event_type IN {_MOVES}), 0),
       count(*)
  FROM events e JOIN accounts a ON a.id = e.aggregate_id
 GROUP BY 1, 2
"""
READ_SIDE = """
SELECT day::text, currency, accounts_opened, deposits, deposited, withdrawals, withdrawn, transfers,
       transferred, largest_movement, events
  FROM reporting_daily_totals WHERE subscription = %s
"""


def _totals(url: str, sql: str, params: list[Any]) -> Totals:
    connection = psycopg2.connect(url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
    finally:
        connection.close()
    return {
        (day, currency): tuple(Decimal(v) if isinstance(v, Decimal) else v for v in values)
        for day, currency, *values in rows
    }


def write_side_daily_totals(write_database_url: str) -> Totals:
    return _totals(write_database_url, WRITE_SIDE, [])


def reporting_daily_totals(read_database_url: str, subscription: str) -> Totals:
    return _totals(read_database_url, READ_SIDE, [subscription])


def one_value(url: str, sql: str, params: list[Any] | None = None) -> Any:
    connection = psycopg2.connect(url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(sql, params or [])
            return cursor.fetchone()[0]
    finally:
        connection.close()
