"""What the live view reads from the read database: the last events of the replicated log with what the
projection did with each, and the end-to-end lag of the events applied lately.

Every query runs under a short statement timeout: the page polls every second, and a read database that
is slow or locked must show as such instead of holding one of read-service's threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from django.db import DatabaseError, connection, transaction
from django.db.backends.utils import CursorWrapper

from read_service.projections.event_log.rows import REPLICA_TABLE

STATEMENT_TIMEOUT_MS = 500
LAG_WINDOW_SECONDS = 10


@dataclass(frozen=True, slots=True)
class RecentEvent:
    event_id: str
    type: str
    aggregate_id: str
    version: int
    correlation_id: str | None
    occurred_at: datetime
    path: str | None  # None: not applied yet
    applied_at: datetime | None
    lag_seconds: float | None


@dataclass(frozen=True, slots=True)
class RecentLag:
    window_seconds: int
    events: int
    p50: float | None
    p99: float | None


@dataclass(frozen=True, slots=True)
class ReadDatabaseView:
    up: bool
    events: list[RecentEvent]
    lag: RecentLag | None


def read_database_view(limit: int) -> ReadDatabaseView:
    """The last `limit` events and the recent lag; `up` False when the database did not answer in time."""
    try:
        with _bounded() as cursor:
            return ReadDatabaseView(up=True, events=_recent_events(cursor, limit), lag=_recent_lag(cursor))
    except DatabaseError:
        return ReadDatabaseView(up=False, events=[], lag=None)


@contextmanager
def _bounded() -> Iterator[CursorWrapper]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = %s", [STATEMENT_TIMEOUT_MS])
        yield cursor


def _recent_events(cursor: CursorWrapper, limit: int) -> list[RecentEvent]:
    # The replica holds every committed event, whichever path brings it: newest first by replica_seq (commit
    # order, indexed), each with the tracking record the apply step wrote for it, if any yet.
    cursor.execute(
        f"""
        SELECT r.event_id::text, r.event_type, r.aggregate_id::text, r.aggregate_version, r.correlation_id,
               r.occurred_at, a.path, a.applied_at, extract(epoch FROM a.applied_at - r.occurred_at)
          FROM (SELECT * FROM {REPLICA_TABLE} ORDER BY replica_seq DESC LIMIT %s) AS r
          LEFT JOIN applied_events a ON a.aggregate_id = r.aggregate_id AND a.version = r.aggregate_version
         ORDER BY r.replica_seq DESC
        """,
        [limit],
    )
    return [
        RecentEvent(
            event_id=event_id,
            type=event_type,
            aggregate_id=aggregate_id,
            version=version,
            correlation_id=correlation_id,
            occurred_at=occurred_at,
            path=path,
            applied_at=applied_at,
            lag_seconds=None if lag is None else float(lag),
        )
        for (
            event_id,
            event_type,
            aggregate_id,
            version,
            correlation_id,
            occurred_at,
            path,
            applied_at,
            lag,
        ) in cursor.fetchall()
    ]


def _recent_lag(cursor: CursorWrapper) -> RecentLag:
    # Exact quantiles of applied_at - occurred_at (what cqrs_end_to_end_lag_seconds observes) over the events
    # applied in the window; the index on applied_at keeps it to those rows.
    cursor.execute(
        """
        SELECT count(*),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM applied_at - occurred_at)),
               percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM applied_at - occurred_at))
          FROM applied_events
         WHERE applied_at > now() - make_interval(secs => %s)
        """,
        [LAG_WINDOW_SECONDS],
    )
    count, p50, p99 = cursor.fetchone()
    return RecentLag(
        window_seconds=LAG_WINDOW_SECONDS,
        events=count,
        p50=None if p50 is None else round(float(p50), 4),
        p99=None if p99 is None else round(float(p99), 4),
    )
