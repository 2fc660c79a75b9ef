"""Dead-letter records in the read database: what was dead-lettered, why, when, and whether it was replayed.

The messages themselves wait in `read-service.projector.dlq`; these records make them countable from the
database (/api/projection's `dead_lettered`) and listable without consuming the queue. A record carries the
event's body only when no message exists (see `DeadLetter`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from read_service.projections.models import DeadLetter

# Stored reasons are metric labels too, so they stay short and few; details can be long, but not unbounded.
MAX_DETAIL_CHARS = 2000


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    message_id: str | None
    reason: str
    detail: str
    event_type: str | None = None
    routing_key: str | None = None
    body: bytes | None = None


def dead_letters_record(entries: Iterable[DeadLetterEntry]) -> int:
    """Inserts one record per entry in the current transaction; returns how many."""
    rows = [
        (e.message_id, e.event_type, e.routing_key, e.reason, e.detail[:MAX_DETAIL_CHARS], e.body)
        for e in entries
    ]
    if not rows:
        return 0
    with connection.cursor() as cursor:
        cursor.executemany(
            """
            INSERT INTO dead_letters
                   (message_id, event_type, routing_key, reason, detail, body, dead_lettered_at)
            VALUES (%s, %s, %s, %s, %s, %s, clock_timestamp())
            """,
            rows,
        )
    return len(rows)


def dead_letters_open() -> list[DeadLetter]:
    """Records neither replayed nor purged, oldest first."""
    return list(
        DeadLetter.objects.filter(replayed_at__isnull=True, purged_at__isnull=True).order_by(
            "dead_lettered_at", "id"
        )
    )


def dead_letters_open_count() -> int:
    return DeadLetter.objects.filter(replayed_at__isnull=True, purged_at__isnull=True).count()


def dead_letters_mark_replayed(*, message_id: str | None = None, record_id: int | None = None) -> int:
    """Marks the open record(s) of a replayed message (by message id) or one stored record (by id)."""
    records = DeadLetter.objects.filter(replayed_at__isnull=True, purged_at__isnull=True)
    if record_id is not None:
        records = records.filter(id=record_id)
    elif message_id is not None:
        records = records.filter(message_id=message_id, body__isnull=True)
    else:
        return 0
    return records.update(replayed_at=_now())


def dead_letters_mark_purged() -> int:
    """Marks every open record whose message sat in the queue; stored-body records are dropped as well."""
    return DeadLetter.objects.filter(replayed_at__isnull=True, purged_at__isnull=True).update(
        purged_at=_now()
    )


def _now() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]
