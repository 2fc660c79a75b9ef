"""The log as the reporting subscriber reads it: the replicated `events` table, in commit order.

The cursor is `replica_seq`, not `position`: positions come from a sequence and a transaction holding a low
one can commit after one holding a higher, whereas the subscription applies the write side's transactions
one after another in commit order, so a row never becomes visible below a `replica_seq` already read
(event_log/replica.py). Reading by position up to a high-water mark could step over such a late commit for
good; reading by `replica_seq` cannot.

Each row comes with whether it committed after the subscriber's queue was bound (`past_fence`, below) and
is turned into an event the way every read of the log does (event_log/rows.py).

The switch to live. Once its queue is bound (at `bound_at`), every event published afterwards waits in it.
An event published before was committed before (the relay publishes only what is committed), so the
catch-up must have read every row committed before `bound_at`. Rows arrive in commit order, so that is
certain once it has read one row committed after `bound_at`. A row's commit is not stored, but its
`occurred_at` (set by the write-service inside the transaction) comes before it: a row whose `occurred_at`
is past `bound_at` plus `FENCE_MARGIN_SECONDS` (room for the two machines' clocks to disagree) committed
after the bind. Until such a row arrives, which happens with the first command after the bind, the
subscriber keeps reading the log (and counts whatever replication brings late); from then on the queue has
everything the log does not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection

from cqrs_common.events import EventEnvelope
from read_service.projections.dead_letters import DeadLetterEntry
from read_service.projections.event_log.rows import REPLICA_TABLE, event_read, wire_sql

# How far apart the write-service's clock and this process's may be (NTP keeps them within milliseconds).
FENCE_MARGIN_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class HistoryBatch:
    events: list[EventEnvelope]
    refused: list[DeadLetterEntry]  # rows that are no valid event of this contract
    last_seq: int | None  # the cursor after this batch; None when nothing was read
    past_fence: bool  # a row of it committed after the queue was bound


def fence(bound_at: datetime) -> datetime:
    return bound_at + timedelta(seconds=FENCE_MARGIN_SECONDS)


def history_after(replica_seq: int, *, bound_at: datetime, limit: int) -> HistoryBatch:
    """Up to `limit` rows of the log past `replica_seq`, in commit order."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT r.replica_seq, r.occurred_at > %s, {wire_sql("r")}
              FROM {REPLICA_TABLE} r
             WHERE r.replica_seq > %s
             ORDER BY r.replica_seq
             LIMIT %s
            """,
            [fence(bound_at), replica_seq, limit],
        )
        rows = cursor.fetchall()
    events: list[EventEnvelope] = []
    refused: list[DeadLetterEntry] = []
    for _seq, _past, wire in rows:
        read = event_read(json.loads(wire))
        (refused if isinstance(read, DeadLetterEntry) else events).append(read)  # type: ignore[arg-type]
    return HistoryBatch(
        events, refused, rows[-1][0] if rows else None, any(past for _seq, past, _wire in rows)
    )


def fence_passed(replica_seq: int, *, bound_at: datetime) -> bool:
    """Whether the log read so far (up to `replica_seq`) holds a row committed after the bind: asked once
    when a catch-up resumes after a restart."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT EXISTS (SELECT FROM {REPLICA_TABLE} WHERE replica_seq <= %s AND occurred_at > %s)",
            [replica_seq, fence(bound_at)],
        )
        return bool(cursor.fetchone()[0])


def history_unread(replica_seq: int) -> int:
    """Rows of the log past the cursor: how far behind the catch-up is."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {REPLICA_TABLE} WHERE replica_seq > %s", [replica_seq])
        return int(cursor.fetchone()[0])
