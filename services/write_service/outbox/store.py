"""The outbox's SQL: what is still to publish in the `events` table, and the relay's progress beside it.

The event rows are never touched: `events` refuses every UPDATE and DELETE (ledger migration 0009). What the
relay has published is a high-water mark and a short list of gaps (migration 0008):

- `outbox_progress.mark`: every event with a position <= mark has been confirmed by RabbitMQ, or its position
  is in `outbox_gaps`. The relay reads the events after the mark in position order, publishes them, and once
  RabbitMQ confirmed them moves the mark to the last of them (`outbox_advance`), in one short statement.
- `outbox_gaps`: positions below the mark the relay did not publish because it did not see them. Positions
  are handed out at insert and transactions commit in another order, so a transaction holding a lower
  position can commit after a higher one was read and published; its event must still go out. The relay
  reads the events of the gaps with every drain and publishes those that appeared (`outbox_pending`).

When is a gap no gap any more? A position can be missing for good: its transaction aborted, or took the
position and failed. Such a gap is forgotten once no transaction that could still commit it is running:

1. A position is handed out by `events_next_position()` (migration 0007), which first gives its transaction a
   transaction id: the transaction X that holds a position p had its id before p was handed out.
2. The relay records p as a gap because a read saw an event with a higher position q committed and p not.
   q was handed out after p (the sequence has CACHE 1: handed out later means higher), and was committed
   before that read; so X had its id before the read began, and the transaction that records the gap gets
   its id (`recorded_xid`) later still, after that read. Transaction ids are handed out in increasing order,
   so X < recorded_xid.
3. `pg_snapshot_xmin(pg_current_snapshot())` is the oldest transaction id still running when the snapshot is
   taken: every transaction with a smaller id has ended, committed or aborted. So once recorded_xid <= xmin,
   X has ended; had it committed, p would be visible in that same snapshot. A gap whose event that snapshot
   does not see, with recorded_xid <= its xmin, can never appear: it is forgotten (`outbox_pending`), in the
   same statement, so the snapshot that looks for the row is the one whose xmin is compared.

The bound must be a transaction id really handed out after the read. The read's own `pg_snapshot_xmax` is
not one: PostgreSQL computes it as the latest completed id + 1, so a transaction that took its id earlier
but is still running can have an id at or above it (one that took its id after the transaction of q, then
its position before q's). Every hole is therefore recorded, and only the recording transaction's id proves
it settled. Jumps of the sequence, which would make millions of holes, are taken care of where they happen:
TRUNCATE of `events` moves the mark to the sequence's last value (migration 0008), and the tests' flush
keeps positions and mark going (devkit/replication.py).

Plain SQL on the relay's autocommit session: each statement is its own short transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cqrs_common.events import EventEnvelope
from write_service.outbox.session import Session

EVENT_COLUMNS = (
    "e.position, e.event_id, e.event_type, e.schema_version, e.aggregate_type, e.aggregate_id,"
    " e.aggregate_version, e.occurred_at, e.correlation_id, e.causation_id, e.data"
)


@dataclass(frozen=True, slots=True)
class Backlog:
    count: int
    oldest_occurred_at: datetime | None

    def oldest_age_seconds(self, now: datetime) -> float:
        return (
            0.0
            if self.oldest_occurred_at is None
            else max((now - self.oldest_occurred_at).total_seconds(), 0)
        )


@dataclass(frozen=True, slots=True)
class Batch:
    """Events read for one publish, and what their confirm will let the relay record.

    `events`: first those of recorded gaps that appeared (`gap_positions`), then the events after `after`
    (the mark, or the previous batch's last position) in position order.
    """

    events: list[EventEnvelope]
    after: int
    full: bool = False  # the read after `after` returned as many events as asked: more may follow
    gap_positions: frozenset[int] = field(default_factory=frozenset)
    forgotten: int = 0  # gaps the read found settled and deleted

    @property
    def through(self) -> int:
        """The mark once this batch is confirmed: its last event after `after` (or `after` itself)."""
        positions = [e.position for e in self.events if e.position not in self.gap_positions]
        return max(positions, default=self.after)

    def holes(self) -> list[tuple[int, int]]:
        """The runs of positions in (after, through] the read did not find, as (first, last)."""
        runs = []
        previous = self.after
        for position in sorted(e.position for e in self.events if e.position not in self.gap_positions):
            if position > previous + 1:
                runs.append((previous + 1, position - 1))
            previous = position
        return runs


@dataclass(frozen=True, slots=True)
class Advanced:
    moved: bool  # False: the mark was no longer where the batch was read from (another relay, a TRUNCATE)
    gaps_recorded: int
    gaps_filled: int


def outbox_pending(session: Session, *, limit: int) -> Batch:
    """The first batch of a drain: the events of gaps that appeared, then those after the mark (at most
    `limit` of each), after forgetting the gaps that are settled (see the module's docstring)."""
    with session.cursor() as cursor:
        cursor.execute(
            f"""
            WITH progress AS (
                SELECT coalesce((SELECT mark FROM outbox_progress), 0) AS mark,
                       pg_snapshot_xmin(pg_current_snapshot()) AS xmin
            ), forgotten AS (
                DELETE FROM outbox_gaps g USING progress p
                 WHERE g.recorded_xid <= p.xmin
                   AND NOT EXISTS (SELECT FROM events e WHERE e.position = g.position)
                RETURNING g.position
            ), pending AS (
                (SELECT true AS gap, {EVENT_COLUMNS}
                   FROM outbox_gaps g JOIN events e ON e.position = g.position
                  WHERE g.position <= (SELECT mark FROM progress)
                  ORDER BY e.position LIMIT %(limit)s)
                UNION ALL
                (SELECT false AS gap, {EVENT_COLUMNS}
                   FROM events e
                  WHERE e.position > (SELECT mark FROM progress)
                  ORDER BY e.position LIMIT %(limit)s)
            )
            SELECT p.mark, (SELECT count(*) FROM forgotten), pending.*
              FROM progress p LEFT JOIN pending ON true
             ORDER BY pending.gap DESC, pending.position
            """,
            {"limit": limit},
        )
        rows = cursor.fetchall()
    mark, forgotten = rows[0][:2]
    found = [row[2:] for row in rows if row[2] is not None]
    events = [_envelope(row[1:]) for row in found]
    after_mark = sum(1 for row in found if not row[0])
    return Batch(
        events=events,
        after=mark,
        full=after_mark == limit,
        gap_positions=frozenset(event.position for row, event in zip(found, events, strict=True) if row[0]),
        forgotten=forgotten,
    )


def outbox_after(session: Session, *, after: int, limit: int) -> Batch:
    """The next batch of a drain: events after position `after` (the previous batch's last)."""
    with session.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT {EVENT_COLUMNS} FROM events e WHERE e.position > %s ORDER BY e.position LIMIT %s
            """,
            (after, limit),
        )
        rows = cursor.fetchall()
    return Batch(events=[_envelope(row) for row in rows], after=after, full=len(rows) == limit)


def outbox_advance(session: Session, batch: Batch) -> Advanced:
    """Records a confirmed batch in one statement: the mark moves to `batch.through` (if it is still where
    the batch was read from), the holes below it become gaps with this transaction's id, and the gaps it
    published are deleted."""
    holes = batch.holes()
    with session.cursor() as cursor:
        cursor.execute(
            """
            WITH advanced AS (
                UPDATE outbox_progress SET mark = %(through)s, advanced_at = now()
                 WHERE mark = %(after)s AND %(through)s > %(after)s
                RETURNING mark
            ), recorded AS (
                INSERT INTO outbox_gaps (position, recorded_xid)
                SELECT generate_series(run.first, run.last), pg_current_xact_id()
                  FROM advanced, unnest(%(firsts)s::bigint[], %(lasts)s::bigint[]) AS run (first, last)
                ON CONFLICT (position) DO NOTHING
                RETURNING position
            ), filled AS (
                DELETE FROM outbox_gaps WHERE position = ANY(%(filled)s::bigint[]) RETURNING position
            )
            SELECT (SELECT count(*) FROM advanced), (SELECT count(*) FROM recorded),
                   (SELECT count(*) FROM filled)
            """,
            {
                "through": batch.through,
                "after": batch.after,
                "firsts": [first for first, _ in holes],
                "lasts": [last for _, last in holes],
                "filled": sorted(batch.gap_positions),
            },
        )
        advanced, recorded, filled = cursor.fetchone()
    return Advanced(
        moved=bool(advanced) or batch.through == batch.after, gaps_recorded=recorded, gaps_filled=filled
    )


def outbox_progress_ensure(session: Session) -> None:
    """The progress row, if it was deleted: every event in `events` is published (again), at least once,
    never a loss. `events` is locked first, so that no transaction holding a position runs: the positions
    below the first event can never appear, and the mark starts just below it (or at the sequence's last
    value when there are no events), not at 0 with every position below a hole to record."""
    with session.cursor() as cursor:
        cursor.execute(
            """
            DO $$
            BEGIN
                IF NOT EXISTS (SELECT FROM outbox_progress) THEN
                    LOCK TABLE events IN SHARE MODE;
                    INSERT INTO outbox_progress (mark)
                    SELECT coalesce(min(position) - 1, pg_sequence_last_value(
                               pg_get_serial_sequence('events', 'position')::regclass), 0)
                      FROM events
                    ON CONFLICT (singleton) DO NOTHING;
                END IF;
            END $$
            """
        )


def outbox_backlog(session: Session) -> Backlog:
    with session.cursor() as cursor:
        cursor.execute("SELECT count(*), min(occurred_at) FROM outbox_unpublished")
        count, oldest = cursor.fetchone()
        return Backlog(count=count, oldest_occurred_at=oldest)


def _envelope(row: Sequence[Any]) -> EventEnvelope:
    (
        position,
        event_id,
        event_type,
        schema_version,
        aggregate_type,
        aggregate_id,
        aggregate_version,
        occurred_at,
        correlation_id,
        causation_id,
        data,
    ) = row
    return EventEnvelope(
        position=position,
        event_id=event_id,
        type=event_type,
        schema_version=schema_version,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        aggregate_version=aggregate_version,
        occurred_at=occurred_at,
        correlation_id=correlation_id,
        causation_id=causation_id,
        data=data,
    )


@dataclass(frozen=True, slots=True)
class ReplicationSlot:
    name: str
    retained_bytes: int  # WAL kept for it (0 once it is lost: it keeps nothing any more)
    wal_status: str | None  # pg_replication_slots: reserved, extended, unreserved, or lost (invalidated)


def replication_slots(session: Session) -> list[ReplicationSlot]:
    """The replication slots of this database (the read side's subscription) and the WAL each keeps."""
    with session.cursor() as cursor:
        cursor.execute(
            """
            SELECT slot_name, COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint,
                   wal_status
              FROM pg_replication_slots
             WHERE database = current_database()
            """
        )
        return [ReplicationSlot(slot, int(retained), status) for slot, retained, status in cursor.fetchall()]


def utc_now() -> datetime:
    return datetime.now(UTC)
