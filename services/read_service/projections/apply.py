"""The apply step: the one place where idempotency and per-account ordering live.

`apply_events` takes events from any path (`broker`: messages from RabbitMQ; `replication`: rows of the
replicated `events` table) and applies them in ONE read-DB transaction. For each event it compares the
event's version with the account's applied version (the highest `applied_events.version` of the account,
written in the same transaction as the read-model change, so the two can never disagree):

- version <= applied: a duplicate, counted and ignored;
- version == applied + 1: its entry in the registry (`handlers.PROJECTIONS`) is applied (a money event's
  movement joins the batch's run, any other event's handler runs), the tracking row is written, then
  events of that account waiting in `pending_events` that are now next are applied too;
- version > applied + 1: the event is parked in `pending_events` until the gap before it is filled;
- handler failure (or an event that cannot be parked): that event alone is undone and reported as failed,
  with a dead-letter record written in the same transaction. An event that came from the broker has its
  message in the DLQ once the caller rejects it; any other (a parked event that fails when drained, an event
  of the replication path) has no message to reject, so its record keeps the event for `dlq replay`.

Handlers fail rarely, and a savepoint around each event would cost two round trips per event, so a batch
runs first without them, its tracking rows written together at the end, and its money events (most of the
traffic) gathered into runs applied by one set-based statement each (`handlers.move_money`; a run ends
before any other event, so an account's changes keep their order). The last run goes into the statement
that records the batch's progress: a batch of money events, a backlog's or a lone deposit's, costs the lock
and read, one statement and the commit. If a handler or a run fails, the transaction is rolled back and
the batch runs again event by event, with a savepoint around each (handler and tracking row), so only the
failing ones are undone.

`apply_each` is the last resort when `apply_events` itself raised for a reason no check foresaw: each event
in a transaction of its own, so only an event that still fails is refused (`apply_failed`).

Accounts of a batch are locked (transaction-level advisory locks, in key order) before their versions are
read, so concurrent appliers (a second projector during a rollout, the replication path) serialise per
account without deadlocks. Errors of the database itself propagate: the caller retries the whole batch.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.db import InterfaceError, OperationalError, connection, transaction

from cqrs_common import metrics
from cqrs_common.events import EventEnvelope, to_wire
from cqrs_common.logging import get_logger
from read_service.projections import apply_sql as sql
from read_service.projections.dead_letters import DeadLetterEntry, dead_letters_record
from read_service.projections.event_log.rows import event_read
from read_service.projections.handlers import (
    PROJECTIONS,
    Movement,
    Projection,
    check_projected,
    move_money,
    move_money_params,
)

log = get_logger(__name__)
_stdlib_log = logging.getLogger(__name__)

BROKER = "broker"
REPLICATION = "replication"
PATHS = (BROKER, REPLICATION)
# NOTIFY channel, payload = account id, delivered at commit; read-your-writes waits on it.
PROJECTED_CHANNEL = "account_projected"
HANDLER_FAILED = "handler_failed"
PARK_FAILED = "park_failed"
APPLY_FAILED = "apply_failed"
UNKNOWN_TYPE = "unknown_type"
MAX_LOGGED_IDS = 20


@dataclass(frozen=True, slots=True)
class Applied:
    event: EventEnvelope
    path: str  # the path the event arrived by (a drained event keeps the path it was parked from)


@dataclass(frozen=True, slots=True)
class Failure:
    event: EventEnvelope
    reason: str
    detail: str
    from_pending: bool = False


@dataclass(slots=True)
class ApplyOutcome:
    applied: list[Applied] = field(default_factory=list)
    duplicates: list[EventEnvelope] = field(default_factory=list)
    parked: list[EventEnvelope] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    # Reasons of dead letters whose record is the only copy (nothing for the caller to reject).
    recorded_only: list[str] = field(default_factory=list)

    def absorb(self, other: ApplyOutcome) -> None:
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.parked += other.parked
        self.failed += other.failed
        self.recorded_only += other.recorded_only

    def failures_to_reject(self, path: str) -> list[Failure]:
        """Failed events that arrived as broker messages in this call: the caller rejects them to the DLQ."""
        return [f for f in self.failed if path == BROKER and not f.from_pending]


class _HandlerFailed(Exception):
    """Raised out of the savepoint-less first run so the batch is redone with savepoints."""


def apply_events(
    events: Sequence[EventEnvelope], *, path: str, refused: Iterable[DeadLetterEntry] = ()
) -> ApplyOutcome:
    """Applies `events` in one transaction; `refused` are dead-letter records of messages that never became
    events (unparsable), written in the same transaction."""
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}")
    refused = list(refused)
    return _apply_retried(events, path, refused, drain=set())


def parked_ready_drain(*, path: str, limit: int = 500) -> ApplyOutcome:
    """Applies parked events that wait for nothing (up to `limit` accounts), as if their predecessor had just
    been applied: in one transaction, under the account locks, the versions read again there."""
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}")
    with connection.cursor() as cursor:
        cursor.execute(sql.READY_TO_DRAIN, [limit])
        accounts = {UUID(str(account_id)) for (account_id,) in cursor.fetchall()}
    if not accounts:
        return ApplyOutcome()
    outcome = _apply_retried([], path, [], drain=accounts)
    log.info("parked_events_drained", accounts=len(accounts), applied=len(outcome.applied))
    return outcome


def _apply_retried(
    events: Sequence[EventEnvelope], path: str, refused: list[DeadLetterEntry], *, drain: set[UUID]
) -> ApplyOutcome:
    try:
        return _apply(events, path, refused, isolate=False, drain=drain)
    except _HandlerFailed:
        return _apply(events, path, refused, isolate=True, drain=drain)


def _apply(
    events: Sequence[EventEnvelope],
    path: str,
    refused: list[DeadLetterEntry],
    *,
    isolate: bool,
    drain: set[UUID],
) -> ApplyOutcome:
    outcome = ApplyOutcome()
    with transaction.atomic(), connection.cursor() as cursor:
        batch = _Batch(cursor, path, outcome, isolate, {event.aggregate_id for event in events} | drain)
        for event in events:
            batch.route(event)
        for account_id in sorted(drain & batch.waiting):
            batch.drain(account_id)
        dead_letters_record([*refused, *batch.dead_letters])
        try:
            _record_progress(cursor, outcome, batch.untracked, batch.movements)
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:
            # A money run that failed (an account not projected), or an event id seen before with another
            # version: the batch is redone event by event, so only the failing events are refused.
            raise _HandlerFailed from exc
        # robust: a failing metric or log line must not fail a batch that is committed already
        transaction.on_commit(lambda: _observe(outcome, path), robust=True)
    return outcome


def apply_each(
    events: Sequence[EventEnvelope], *, path: str, refused: Iterable[DeadLetterEntry] = ()
) -> ApplyOutcome:
    """What `apply_events` does, one event per transaction, for a batch that made `apply_events` raise:
    an event that still fails is refused alone (`apply_failed`, with its record), the others are applied.
    Errors of the database itself still propagate (the caller retries: applied events come back as
    duplicates). The records of `refused` are written last, so a retry never writes them twice."""
    outcome = ApplyOutcome()
    for event in events:
        try:
            outcome.absorb(apply_events([event], path=path))
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:
            detail = f"{type(exc).__name__}: {str(exc)[:500]}"
            outcome.failed.append(Failure(event, APPLY_FAILED, detail))
            body = None if path == BROKER else _wire_or_none(event)  # a broker message goes to the DLQ
            log.error("event_apply_failed", event_id=str(event.event_id), path=path, error=detail)
            stored = _record_alone(
                [
                    DeadLetterEntry(
                        str(event.event_id), APPLY_FAILED, detail, event.type, event.routing_key, body
                    )
                ]
            )
            if body is not None and stored:
                metrics.EVENTS_DEAD_LETTERED.labels(reason=APPLY_FAILED).inc()
    _record_alone(list(refused))
    return outcome


def _record_alone(entries: list[DeadLetterEntry]) -> bool:
    """Writes dead-letter records in a transaction of their own; a record that cannot be written is logged
    (the message still goes to the DLQ) rather than allowed to stop the projector."""
    if not entries:
        return True
    try:
        with transaction.atomic():
            dead_letters_record(entries)
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        log.error("dead_letter_record_failed", records=len(entries), exc_info=True)
        return False
    return True


def _wire_or_none(event: EventEnvelope) -> bytes | None:
    try:
        return to_wire(event)
    except (TypeError, ValueError, OverflowError):
        return None


class _Batch:
    """State of one apply transaction: applied version per account, accounts with parked events."""

    def __init__(self, cursor: Any, path: str, outcome: ApplyOutcome, isolate: bool, accounts: set[UUID]):
        self.cursor = cursor
        self.path = path
        self.outcome = outcome
        self.isolate = isolate
        self.dead_letters: list[DeadLetterEntry] = []
        self.untracked: list[Applied] = []  # applied without a savepoint; tracked together at the end
        # Money events applied without a savepoint, not written yet: written before the next other event, and
        # the last run with the batch's progress (`_record_progress`).
        self.movements: list[Movement] = []
        self.versions, self.waiting = _lock_and_read(cursor, accounts)

    def route(self, event: EventEnvelope) -> None:
        applied_version = self.versions.get(event.aggregate_id, 0)
        if event.aggregate_version <= applied_version:
            self.outcome.duplicates.append(event)
        elif event.aggregate_version > applied_version + 1:
            parked = self.park(event)
            if parked:
                self.outcome.parked.append(event)
                self.waiting.add(event.aggregate_id)
            elif parked is not None:  # this version is parked already
                self.outcome.duplicates.append(event)
        elif self.apply(event, self.path, from_pending=False) and event.aggregate_id in self.waiting:
            self.drain(event.aggregate_id)

    def apply(self, event: EventEnvelope, path: str, *, from_pending: bool) -> bool:
        projection = PROJECTIONS.get(event.type)
        try:
            if projection is None:  # from_wire refuses unknown types; another path might not
                raise LookupError(f"no handler for {event.type}")
            if self.isolate:
                with transaction.atomic():  # a savepoint: a failure undoes this event only
                    projection.handler(self.cursor, event)
                    _track(self.cursor, event, path)
            else:
                self.run(projection, event)
                self.untracked.append(Applied(event, path))
        except (OperationalError, InterfaceError):
            raise  # the database itself is in trouble, not this event: the caller retries the batch
        except Exception as exc:
            if not self.isolate:
                raise _HandlerFailed from exc
            reason = UNKNOWN_TYPE if projection is None else HANDLER_FAILED
            self.fail(Failure(event, reason, f"{type(exc).__name__}: {exc}", from_pending))
            return False
        self.versions[event.aggregate_id] = event.aggregate_version
        self.outcome.applied.append(Applied(event, path))
        return True

    def park(self, event: EventEnvelope) -> bool | None:
        """True when parked now, False when parked already, None when it cannot be (refused as failed).
        `from_dict` lets through only what `pending_events` can store; this guards what it did not foresee."""
        try:
            if not self.isolate:
                return _park(self.cursor, event, self.path)
            with transaction.atomic():
                return _park(self.cursor, event, self.path)
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:
            if not self.isolate:
                raise _HandlerFailed from exc
            self.fail(Failure(event, PARK_FAILED, f"{type(exc).__name__}: {str(exc)[:500]}"))
            return None

    def run(self, projection: Projection, event: EventEnvelope) -> None:
        """Without a savepoint: a money event joins the run of movements; any other event writes that run
        first, so every account sees its events in order."""
        if projection.movement is not None:
            self.movements.append(projection.movement(event))
            return
        self.write_movements()
        projection.handler(self.cursor, event)

    def write_movements(self) -> None:
        movements, self.movements = self.movements, []
        move_money(self.cursor, movements)

    def fail(self, failure: Failure) -> None:
        event = failure.event
        self.outcome.failed.append(failure)
        rejected_by_caller = self.path == BROKER and not failure.from_pending  # its message goes to the DLQ
        body = None if rejected_by_caller else _wire_or_none(event)
        self.dead_letters.append(
            DeadLetterEntry(
                str(event.event_id), failure.reason, failure.detail, event.type, event.routing_key, body
            )
        )
        if body is not None:
            self.outcome.recorded_only.append(failure.reason)
        log.warning("event_projection_failed", **_logged(event), reason=failure.reason, error=failure.detail)

    def drain(self, account_id: UUID) -> None:
        """Applies parked events of the account while each is the next version."""
        while True:
            expected = self.versions.get(account_id, 0) + 1
            self.cursor.execute(sql.TAKE_PARKED, [account_id, expected])
            # Django hands jsonb over as text (it turns psycopg2's decoding off). A parked event this release
            # cannot read was parked by an older one that understood it: it is dead-lettered with its body.
            rows = [
                (version, event_read(json.loads(body)), path)
                for version, body, path in self.cursor.fetchall()
            ]
            for version, older, _ in rows:  # older versions can only be copies of events applied since
                if version == expected:
                    continue
                if isinstance(older, DeadLetterEntry):
                    self.dead_letter_unreadable(older)
                else:
                    self.outcome.duplicates.append(older)
            nexts = [(event, path) for version, event, path in rows if version == expected]
            if not nexts:
                return
            event, path = nexts[0]
            if isinstance(event, DeadLetterEntry):
                self.dead_letter_unreadable(event)
                return
            if not self.apply(event, path, from_pending=True):
                return  # later versions keep waiting; `pending_gaps` shows it

    def dead_letter_unreadable(self, entry: DeadLetterEntry) -> None:
        self.dead_letters.append(entry)
        self.outcome.recorded_only.append(entry.reason)
        log.warning("event_dead_lettered", reason=entry.reason, message_id=entry.message_id, source="pending")


def _lock_and_read(cursor: Any, accounts: set[UUID]) -> tuple[dict[UUID, int], set[UUID]]:
    """Locks the accounts (in key order, so two appliers never deadlock), then the rows every applier shares
    (`SHARED_ROWS_LOCK`), and reads the accounts' applied versions and whether they have parked events."""
    if not accounts:
        cursor.execute(sql.SHARED_ROWS_LOCK)
        return {}, set()
    cursor.execute(sql.LOCK_AND_READ, {"accounts": [str(a) for a in accounts]})
    rows = cursor.fetchall()
    return {UUID(str(a)): v for a, v, _ in rows if v}, {UUID(str(a)) for a, _, waiting in rows if waiting}


def _park(cursor: Any, event: EventEnvelope, path: str) -> bool:
    cursor.execute(sql.PARK, [*_event_columns(event), to_wire(event).decode(), path])
    return cursor.rowcount == 1


def _track(cursor: Any, event: EventEnvelope, path: str) -> None:
    cursor.execute(sql.TRACK, [*_event_columns(event), path])


def _event_columns(event: EventEnvelope) -> list[Any]:
    """The columns that `pending_events` and `applied_events` both start with, in their order."""
    return [
        event.event_id,
        event.aggregate_id,
        event.aggregate_version,
        event.position,
        event.type,
        event.occurred_at,
    ]


def _record_progress(
    cursor: Any, outcome: ApplyOutcome, untracked: list[Applied], movements: list[Movement]
) -> None:
    """In one statement: the batch's last run of `movements` (if any), the tracking rows not written yet,
    the counters and the NOTIFYs. Raises `ProjectionError` if an account of the movements is not projected."""
    if not outcome.applied:
        return
    params = {
        "event_ids": [str(item.event.event_id) for item in untracked],
        "aggregate_ids": [str(item.event.aggregate_id) for item in untracked],
        "tracked_versions": [item.event.aggregate_version for item in untracked],
        "positions": [item.event.position for item in untracked],
        "types": [item.event.type for item in untracked],
        "occurred": [item.event.occurred_at for item in untracked],
        "paths": [item.path for item in untracked],
        "mode": outcome.applied[0].path,
        "applied": len(outcome.applied),
        "newest": max(item.event.occurred_at for item in outcome.applied),
        "channel": PROJECTED_CHANNEL,
        "accounts": sorted({str(item.event.aggregate_id) for item in outcome.applied}),
    }
    if not movements:
        cursor.execute(sql.RECORD_PROGRESS, params)
        return
    cursor.execute(sql.MOVE_MONEY_AND_RECORD_PROGRESS, {**params, **move_money_params(movements)})
    check_projected(movements, cursor.fetchone()[0])


@functools.cache
def _applied_counter(event_type: str, path: str) -> Any:
    return metrics.EVENTS_APPLIED.labels(type=event_type, path=path)


def _observe(outcome: ApplyOutcome, path: str) -> None:
    """Metrics and log lines, once the transaction has committed (so they never count a rolled-back try)."""
    now = time.time()
    debug = _stdlib_log.isEnabledFor(logging.DEBUG)  # skip building lines nobody will see
    for item in outcome.applied:
        event = item.event
        _applied_counter(event.type, item.path).inc()
        metrics.END_TO_END_LAG.observe(max(0.0, now - event.occurred_at.timestamp()))
        if not debug:
            continue
        log.debug("event_applied", **_logged(event), path=item.path)
    for event in outcome.parked:
        log.info("event_parked", **_logged(event), path=path)
    if outcome.parked:
        metrics.EVENTS_PARKED.labels(path=path).inc(len(outcome.parked))
    if outcome.duplicates:
        metrics.EVENTS_DUPLICATE.labels(path=path).inc(len(outcome.duplicates))
    for reason in outcome.recorded_only:
        metrics.EVENTS_DEAD_LETTERED.labels(reason=reason).inc()
    # At INFO a request's correlation id still leads to the batch that projected it.
    correlation_ids = sorted({i.event.correlation_id for i in outcome.applied if i.event.correlation_id})
    log.info(
        "batch_applied",
        path=path,
        applied=len(outcome.applied),
        duplicates=len(outcome.duplicates),
        parked=len(outcome.parked),
        failed=len(outcome.failed),
        correlation_ids=correlation_ids[:MAX_LOGGED_IDS],
    )


def _logged(event: EventEnvelope) -> dict[str, Any]:
    """The fields that name an event in every log line about it."""
    return {
        "event_id": str(event.event_id),
        "type": event.type,
        "aggregate_id": str(event.aggregate_id),
        "version": event.aggregate_version,
        "correlation_id": event.correlation_id,
    }
