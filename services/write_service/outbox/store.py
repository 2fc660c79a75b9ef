"""The outbox's SQL: the `events` table seen as a queue of unpublished events (see ledger.models.Event).

Plain SQL on the relay's session: a batch is read with one SELECT over the partial index of unpublished
events and marked with one UPDATE, the only UPDATE the table's append-only trigger allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cqrs_common.events import EventEnvelope
from write_service.outbox.session import Session


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


def events_unpublished(session: Session, *, limit: int, after: int = 0) -> list[EventEnvelope]:
    """The oldest unpublished events past position `after`, in `position` order, at most `limit`.

    Positions are handed out at insert and transactions may commit out of that order, so a batch can skip a
    position whose transaction is still open. No cursor outlives a drain: every drain starts again from the
    first unpublished event, so a late commit is picked up by the next one (its NOTIFY starts it).
    """
    with session.cursor() as cursor:
        cursor.execute(
            """
            SELECT position, event_id, event_type, schema_version, aggregate_type, aggregate_id,
                   aggregate_version, occurred_at, correlation_id, causation_id, data
              FROM events
             WHERE published_at IS NULL AND position > %s
             ORDER BY position
             LIMIT %s
            """,
            (after, limit),
        )
        return [
            EventEnvelope(
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
            for (
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
            ) in cursor.fetchall()
        ]


def events_mark_published(session: Session, *, positions: Sequence[int]) -> int:
    """Sets `published_at` on events RabbitMQ has confirmed; returns how many were still unmarked."""
    with session.cursor() as cursor:
        cursor.execute(
            "UPDATE events SET published_at = now() WHERE position = ANY(%s) AND published_at IS NULL",
            (list(positions),),
        )
        return cursor.rowcount


def outbox_backlog(session: Session) -> Backlog:
    with session.cursor() as cursor:
        cursor.execute("SELECT count(*), min(occurred_at) FROM events WHERE published_at IS NULL")
        count, oldest = cursor.fetchone()
        return Backlog(count=count, oldest_occurred_at=oldest)


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
