"""Dead-letter records in the read database: what was dead-lettered, why, when, and whether it was replayed.

The messages themselves wait in `read-service.projector.dlq`; these records make them countable from the
database (/api/projection's `dead_lettered`) and listable without consuming the queue. A record carries the
event's body only when no message exists (see `DeadLetter`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection

from cqrs_common import metrics
from cqrs_common.events import InvalidEvent, routing_key
from cqrs_common.logging import get_logger
from read_service.projections.apply_sql import RECORD_DEAD_LETTER
from read_service.projections.models import DeadLetter

log = get_logger(__name__)

# Stored reasons are metric labels too, so they stay short and few; details can be long, but not unbounded.
MAX_DETAIL_CHARS = 2000
# The record's columns (models.DeadLetter): a message's properties are cut to fit, never refused for it.
MAX_MESSAGE_ID_CHARS = 255
MAX_EVENT_TYPE_CHARS = 64
MAX_ROUTING_KEY_CHARS = 255
MAX_REASON_CHARS = 64


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """What a record stores. Its text fields are made storable on construction, whatever they came from
    (a hostile message's properties): text, no NUL, no lone surrogate, cut to the column's length."""

    message_id: str | None
    reason: str
    detail: str
    event_type: str | None = None
    routing_key: str | None = None
    body: bytes | None = None

    def __post_init__(self) -> None:
        for name, limit in (
            ("message_id", MAX_MESSAGE_ID_CHARS),
            ("event_type", MAX_EVENT_TYPE_CHARS),
            ("routing_key", MAX_ROUTING_KEY_CHARS),
        ):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, storable_text(value, limit))
        object.__setattr__(self, "reason", storable_text(self.reason, MAX_REASON_CHARS))
        object.__setattr__(self, "detail", storable_text(self.detail, MAX_DETAIL_CHARS))


def dead_lettered(entry: DeadLetterEntry, **context: Any) -> None:
    """Counts and logs a dead letter once its record is committed, whichever path refused it (CONTRACT.md:
    the metric by reason, the log line with the reason, message id and detail); `context` adds what the path
    knows besides (the message's correlation id, the path)."""
    metrics.EVENTS_DEAD_LETTERED.labels(reason=entry.reason).inc()
    log.warning(
        "event_dead_lettered",
        reason=entry.reason,
        message_id=entry.message_id,
        routing_key=entry.routing_key,
        detail=entry.detail,
        **context,
    )


def dead_letter_unreadable(envelope: dict[str, Any], exc: InvalidEvent) -> DeadLetterEntry:
    """The record of a stored event that is no valid event of this contract (a replica row of a type this
    release does not know, an event parked by an older release): no message holds it, so the record keeps
    the event as it was read, for `dlq replay`."""
    event_type = str(envelope.get("type"))
    return DeadLetterEntry(
        str(envelope.get("event_id")),
        exc.reason,
        exc.detail,
        event_type,
        routing_key(event_type),
        json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode(),
    )


def storable_text(value: object, limit: int) -> str:
    """`value` as text PostgreSQL can store, at most `limit` characters: bytes that are not UTF-8, NUL and
    lone surrogates become backslash escapes (so nothing is silently lost from what an operator reads)."""
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "backslashreplace")
    else:
        text = value if isinstance(value, str) else str(value)
    text = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return text[:limit]


def dead_letters_record(entries: Iterable[DeadLetterEntry]) -> int:
    """Inserts one record per entry in the current transaction; returns how many."""
    rows = [(e.message_id, e.event_type, e.routing_key, e.reason, e.detail, e.body) for e in entries]
    if not rows:
        return 0
    with connection.cursor() as cursor:
        cursor.executemany(RECORD_DEAD_LETTER, rows)
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


def dead_letters_open_of_message(message_id: str | None) -> list[int]:
    """The ids of the open records of a message that sits in the DLQ (by its message id, as the record
    stored it: a hostile id may hold NUL). Taken before the message is replayed, so a record the projector
    writes when it refuses the replayed message again stays open."""
    if message_id is None:
        return []
    return list(
        DeadLetter.objects.filter(
            replayed_at__isnull=True,
            purged_at__isnull=True,
            body__isnull=True,
            message_id=storable_text(message_id, MAX_MESSAGE_ID_CHARS),
        ).values_list("id", flat=True)
    )


def dead_letters_mark_replayed(record_ids: list[int]) -> int:
    """Marks the given open records replayed."""
    if not record_ids:
        return 0
    return DeadLetter.objects.filter(
        id__in=record_ids, replayed_at__isnull=True, purged_at__isnull=True
    ).update(replayed_at=_now())


def dead_letters_mark_purged() -> int:
    """Marks every open record whose message sat in the queue; stored-body records are dropped as well."""
    return DeadLetter.objects.filter(replayed_at__isnull=True, purged_at__isnull=True).update(
        purged_at=_now()
    )


def _now() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]
