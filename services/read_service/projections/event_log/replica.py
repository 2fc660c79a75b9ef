"""The replicated `events` table in the read database: what the fallback path reads, and its cursor.

Logical replication copies every insert into the write database's `events` (the columns the publication
lists) into a table of the same name here, owned by the superuser, as is the schema `public`: this
service may only read it (deploy/compose/replication/subscriber.sql). A subscriber-local column,
`replica_seq`, is filled by its identity default as the subscription applies each row. The subscription's one
apply worker applies the publisher's transactions one after another in COMMIT order, so `replica_seq` grows
in commit order and a row never becomes visible below one already seen: a cursor on it misses nothing.
`position` would not do: it comes from a sequence, and a transaction holding a low position can commit after
one holding a higher. (This relies on the subscription applying whole transactions serially: subscriber.sql
pins `streaming = off`.)

A row is "known" when the read side accounted for it already: applied, parked in `pending_events`, or
dead-lettered (an open record for its event id). Rows are handed out in their wire form (rows.py), which
`events_read` turns into events, so the apply step cannot tell the paths apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db import connection

from read_service.projections.event_log.rows import REPLICA_TABLE, wire_sql

_APPLIED = """EXISTS (SELECT FROM applied_events a
                   WHERE a.aggregate_id = r.aggregate_id AND a.version = r.aggregate_version)"""
_PARKED = """EXISTS (SELECT FROM pending_events p
                  WHERE p.aggregate_id = r.aggregate_id AND p.version = r.aggregate_version)"""
# Open records only: that is what the partial index `dead_letters_open_idx` covers.
_DEAD_LETTERED = """EXISTS (SELECT FROM dead_letters d
                         WHERE d.message_id = r.event_id::text
                           AND d.replayed_at IS NULL AND d.purged_at IS NULL)"""


@dataclass(frozen=True, slots=True)
class ReplicaRow:
    seq: int
    known: bool  # applied, parked or dead-lettered already
    due: bool  # occurred longer ago than the grace period
    wire: dict[str, Any] | None  # the event as on the wire; only for rows not known


def replica_rows_after(
    seq: int, *, grace_seconds: float | None, limit: int, table: str = REPLICA_TABLE
) -> list[ReplicaRow]:
    """Up to `limit` rows past `seq`, in commit order, each marked known or not and due or not (every row
    is due when `grace_seconds` is None: no clock of the write side is compared then)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT s.replica_seq, s.known, s.due, CASE WHEN NOT s.known THEN {wire_sql("s")} END
              FROM (SELECT r.*,
                           ({_APPLIED} OR {_PARKED} OR {_DEAD_LETTERED}) AS known,
                           (%(grace)s::float8 IS NULL
                            OR r.occurred_at <= clock_timestamp() - make_interval(secs => %(grace)s::float8)
                           ) AS due
                      FROM {table} r
                     WHERE r.replica_seq > %(after)s
                     ORDER BY r.replica_seq
                     LIMIT %(limit)s) AS s
             ORDER BY s.replica_seq
            """,
            {"after": seq, "grace": grace_seconds, "limit": limit},
        )
        return [
            ReplicaRow(seq, known, due, None if wire is None else json.loads(wire))
            for seq, known, due, wire in cursor.fetchall()
        ]


def replica_rows_missing(*, limit: int, table: str = REPLICA_TABLE) -> list[dict[str, Any]]:
    """The events parked events wait for (every unapplied version below an account's first parked one), as
    far as the replica has them, in commit order. Dead-lettered ones are left out: they were tried."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT {wire_sql("r")}
              FROM (SELECT aggregate_id, min(version) AS first_parked
                      FROM pending_events GROUP BY aggregate_id) AS p
              JOIN {table} r ON r.aggregate_id = p.aggregate_id AND r.aggregate_version < p.first_parked
             WHERE NOT {_APPLIED} AND NOT {_DEAD_LETTERED}
             ORDER BY r.replica_seq
             LIMIT %(limit)s
            """,
            {"limit": limit},
        )
        return [json.loads(wire) for (wire,) in cursor.fetchall()]


def replica_cursor_get() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT replica_seq FROM replica_cursor WHERE id = 1")
        row = cursor.fetchone()
    return row[0] if row else 0


def replica_cursor_set(seq: int) -> None:
    """Moves the cursor forward (never back: a second projector may have moved it further)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO replica_cursor AS c (id, replica_seq, updated_at) VALUES (1, %s, clock_timestamp())
            ON CONFLICT (id) DO UPDATE SET replica_seq = greatest(c.replica_seq, EXCLUDED.replica_seq),
                                           updated_at = EXCLUDED.updated_at
            """,
            [seq],
        )
