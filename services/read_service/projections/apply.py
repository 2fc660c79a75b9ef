"""The apply step: the one place where idempotency and per-account ordering live.

`apply_events` takes events from any path (`broker`: messages from RabbitMQ; `replication`: rows of the
replicated `events` table) and applies them in ONE read-DB transaction. For each event it compares the
event's version with the account's applied version (the highest `applied_events.version` of the account,
written in the same transaction as the read-model change, so the two can never disagree):

- version <= applied: a duplicate, counted and ignored;
- version == applied + 1: the handler runs inside a savepoint, the tracking row is written, then events of
  that account waiting in `pending_events` that are now next are applied too;
- version > applied + 1: the event is parked in `pending_events` until the gap before it is filled;
- handler failure: the savepoint is rolled back (that event alone) and the event is reported as failed,
  so the caller dead-letters it. A parked event that fails when drained has no message left to dead-letter;
  the apply step writes its dead-letter record, which keeps the event for `dlq replay`.

Accounts of a batch are locked (transaction-level advisory locks, in key order) before anything is read, so
concurrent appliers (a second projector during a rollout, the replication path) serialise per account
without deadlocks. Errors of the database itself propagate: the caller retries the whole batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.db import InterfaceError, OperationalError, connection, transaction

from cqrs_common import metrics
from cqrs_common.events import EventEnvelope, InvalidEvent, from_dict, routing_key, to_wire
from cqrs_common.logging import get_logger
from read_service.projections.dead_letters import DeadLetterEntry, dead_letters_record
from read_service.projections.handlers import HANDLERS

log = get_logger(__name__)

BROKER = "broker"
REPLICATION = "replication"
PATHS = (BROKER, REPLICATION)
# NOTIFY channel, payload = account id, delivered at commit; read-your-writes waits on it.
PROJECTED_CHANNEL = "account_projected"
HANDLER_FAILED = "handler_failed"
UNKNOWN_TYPE = "unknown_type"


@dataclass(frozen=True, slots=True)
class Applied:
    event: EventEnvelope
    path: str  # the path the event arrived by (a drained event keeps the path it was parked from)


@dataclass(frozen=True, slots=True)
class Failure:
    event: EventEnvelope
    reason: str
    detail: str
    from_pending: bool = False  # True: dead-lettered by the apply step already (the record keeps the event)


@dataclass(slots=True)
class ApplyOutcome:
    applied: list[Applied] = field(default_factory=list)
    duplicates: list[EventEnvelope] = field(default_factory=list)
    parked: list[EventEnvelope] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)

    def live_failures(self) -> list[Failure]:
        """Failures of the events the caller handed in: the caller dead-letters these."""
        return [failure for failure in self.failed if not failure.from_pending]


def apply_events(events: Sequence[EventEnvelope], *, path: str) -> ApplyOutcome:
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}")
    outcome = ApplyOutcome()
    if not events:
        return outcome
    with transaction.atomic(), connection.cursor() as cursor:
        accounts = sorted({event.aggregate_id for event in events}, key=str)
        _lock_accounts(cursor, accounts)
        batch = _Batch(cursor, path, outcome, accounts)
        for event in events:
            batch.route(event)
        _record_progress(cursor, outcome)
        transaction.on_commit(lambda: _observe(outcome, path, batch.parked_dead_letters))
    return outcome


class _Batch:
    """State of one apply transaction: applied version per account, accounts with parked events."""

    def __init__(self, cursor: Any, path: str, outcome: ApplyOutcome, accounts: list[UUID]) -> None:
        self.cursor = cursor
        self.path = path
        self.outcome = outcome
        self.versions = _applied_versions(cursor, accounts)
        self.waiting = _accounts_waiting(cursor, accounts)
        self.parked_dead_letters: list[str] = []  # reasons, counted once the transaction commits

    def route(self, event: EventEnvelope) -> None:
        applied_version = self.versions.get(event.aggregate_id, 0)
        if event.aggregate_version <= applied_version:
            self.outcome.duplicates.append(event)
        elif event.aggregate_version > applied_version + 1:
            if _park(self.cursor, event, self.path):
                self.outcome.parked.append(event)
                self.waiting.add(event.aggregate_id)
            else:  # this version is parked already
                self.outcome.duplicates.append(event)
        elif self.apply(event, self.path, from_pending=False) and event.aggregate_id in self.waiting:
            self.drain(event.aggregate_id)

    def apply(self, event: EventEnvelope, path: str, *, from_pending: bool) -> bool:
        handler = HANDLERS.get(event.type)
        if handler is None:  # from_wire refuses unknown types; another path might not
            return self.fail(Failure(event, UNKNOWN_TYPE, f"no handler for {event.type}", from_pending))
        try:
            with transaction.atomic():  # a savepoint: a failure undoes this event only
                handler(self.cursor, event)
                _track(self.cursor, event, path)
        except (OperationalError, InterfaceError):
            raise  # the database itself is in trouble, not this event: the caller retries the batch
        except Exception as exc:
            return self.fail(Failure(event, HANDLER_FAILED, f"{type(exc).__name__}: {exc}", from_pending))
        self.versions[event.aggregate_id] = event.aggregate_version
        self.outcome.applied.append(Applied(event, path))
        log.debug(
            "event_applied",
            event_id=str(event.event_id),
            type=event.type,
            aggregate_id=str(event.aggregate_id),
            version=event.aggregate_version,
            path=path,
            correlation_id=event.correlation_id,
        )
        return True

    def fail(self, failure: Failure) -> bool:
        self.outcome.failed.append(failure)
        event = failure.event
        log.warning(
            "event_projection_failed",
            event_id=str(event.event_id),
            type=event.type,
            aggregate_id=str(event.aggregate_id),
            version=event.aggregate_version,
            reason=failure.reason,
            error=failure.detail,
            correlation_id=event.correlation_id,
        )
        return False

    def drain(self, account_id: UUID) -> None:
        """Applies parked events of the account while each is the next version."""
        while True:
            expected = self.versions[account_id] + 1
            self.cursor.execute(
                "DELETE FROM pending_events WHERE aggregate_id = %s AND version <= %s "
                "RETURNING version, envelope, path",
                [account_id, expected],
            )
            # Django hands jsonb over as text (it turns psycopg2's decoding off).
            rows = [
                (version, json.loads(envelope), path) for version, envelope, path in self.cursor.fetchall()
            ]
            # Older versions can only be copies of events applied since they were parked.
            self.outcome.duplicates.extend(from_dict(row[1]) for row in rows if row[0] != expected)
            nexts = [row for row in rows if row[0] == expected]
            if not nexts:
                return
            _, envelope, path = nexts[0]
            try:
                event = from_dict(envelope)
            except InvalidEvent as exc:  # parked by an older release that understood it
                self.dead_letter_parked(envelope, exc.reason, exc.detail)
                return
            if not self.apply(event, path, from_pending=True):
                failure = self.outcome.failed[-1]
                self.dead_letter_parked(envelope, failure.reason, failure.detail)
                return

    def dead_letter_parked(self, envelope: dict[str, Any], reason: str, detail: str) -> None:
        """Its message was acknowledged when it was parked: the dead-letter record keeps the event."""
        event_type = str(envelope.get("type"))
        message_id = str(envelope.get("event_id"))
        body = json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()
        entry = DeadLetterEntry(message_id, reason, detail, event_type, routing_key(event_type), body)
        dead_letters_record([entry])
        self.parked_dead_letters.append(reason)
        log.warning("event_dead_lettered", reason=reason, message_id=message_id, source="pending")


def _lock_accounts(cursor: Any, accounts: list[UUID]) -> None:
    """One advisory lock per account, taken in key order so that two appliers can never deadlock."""
    cursor.execute(
        "SELECT pg_advisory_xact_lock(k) FROM "
        "(SELECT DISTINCT hashtextextended(a, 0) AS k FROM unnest(%s::text[]) AS a ORDER BY k) AS keys",
        [[str(a) for a in accounts]],
    )


def _applied_versions(cursor: Any, accounts: list[UUID]) -> dict[UUID, int]:
    cursor.execute(
        "SELECT aggregate_id, max(version) FROM applied_events WHERE aggregate_id = ANY(%s::uuid[]) "
        "GROUP BY aggregate_id",
        [[str(a) for a in accounts]],
    )
    return {UUID(str(account)): version for account, version in cursor.fetchall()}


def _accounts_waiting(cursor: Any, accounts: list[UUID]) -> set[UUID]:
    cursor.execute(
        "SELECT DISTINCT aggregate_id FROM pending_events WHERE aggregate_id = ANY(%s::uuid[])",
        [[str(a) for a in accounts]],
    )
    return {UUID(str(row[0])) for row in cursor.fetchall()}


def _park(cursor: Any, event: EventEnvelope, path: str) -> bool:
    cursor.execute(
        """
        INSERT INTO pending_events
               (event_id, aggregate_id, version, position, type, occurred_at, envelope, path, received_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, clock_timestamp())
        ON CONFLICT DO NOTHING
        """,
        [
            event.event_id,
            event.aggregate_id,
            event.aggregate_version,
            event.position,
            event.type,
            event.occurred_at,
            to_wire(event).decode(),
            path,
        ],
    )
    if cursor.rowcount != 1:
        return False
    log.info(
        "event_parked",
        event_id=str(event.event_id),
        aggregate_id=str(event.aggregate_id),
        version=event.aggregate_version,
        path=path,
        correlation_id=event.correlation_id,
    )
    return True


def _track(cursor: Any, event: EventEnvelope, path: str) -> None:
    cursor.execute(
        """
        INSERT INTO applied_events
               (event_id, aggregate_id, version, position, type, occurred_at, applied_at, path)
        VALUES (%s, %s, %s, %s, %s, %s, clock_timestamp(), %s)
        """,
        [
            event.event_id,
            event.aggregate_id,
            event.aggregate_version,
            event.position,
            event.type,
            event.occurred_at,
            path,
        ],
    )


def _record_progress(cursor: Any, outcome: ApplyOutcome) -> None:
    """Counters for /api/projection, and a NOTIFY per changed account (PostgreSQL sends it at commit)."""
    if not outcome.applied:
        return
    newest = max(item.event.occurred_at for item in outcome.applied)
    cursor.execute(
        """
        INSERT INTO projector_state AS s (id, mode, events_applied, last_event_at, last_applied_at)
        VALUES (1, %s, %s, %s, clock_timestamp())
        ON CONFLICT (id) DO UPDATE SET
            events_applied = s.events_applied + EXCLUDED.events_applied,
            last_event_at = greatest(s.last_event_at, EXCLUDED.last_event_at),
            last_applied_at = EXCLUDED.last_applied_at
        """,
        [outcome.applied[0].path, len(outcome.applied), newest],
    )
    accounts = sorted({str(item.event.aggregate_id) for item in outcome.applied})
    cursor.execute("SELECT pg_notify(%s, a) FROM unnest(%s::text[]) AS a", [PROJECTED_CHANNEL, accounts])


def _observe(outcome: ApplyOutcome, path: str, parked_dead_letters: list[str]) -> None:
    """Metrics and the batch log line, once the transaction has committed."""
    now = time.time()
    for item in outcome.applied:
        metrics.EVENTS_APPLIED.labels(type=item.event.type, path=item.path).inc()
        metrics.END_TO_END_LAG.observe(max(0.0, now - item.event.occurred_at.timestamp()))
    if outcome.duplicates:
        metrics.EVENTS_DUPLICATE.labels(path=path).inc(len(outcome.duplicates))
    for reason in parked_dead_letters:
        metrics.EVENTS_DEAD_LETTERED.labels(reason=reason).inc()
    log.info(
        "batch_applied",
        path=path,
        applied=len(outcome.applied),
        duplicates=len(outcome.duplicates),
        parked=len(outcome.parked),
        failed=len(outcome.failed),
    )
