"""The replication path: what the broker has not delivered, applied from the replicated `events` table.

Runs in a thread of its own beside the consuming loop, with its own database connection (Django's are per
thread) and on its own cadence, so the broker path never pays for it. Each round:

1. gaps: events parked in `pending_events` wait for a predecessor; whatever of those the replica holds is
   applied at once (the broker may bring it late or never), and parked events that wait for nothing any
   more (their predecessor applied without draining them, as a rebuild's swap can leave it) are applied;
2. scan: replica rows past the cursor, in commit order (`event_log/replica.py`). Rows the read side does
   not know yet are applied when due: once older than the grace period while the broker path is active (it
   had its chance), at once while it is not. The cursor then moves to just before the first row still
   inside its grace period, so a row is passed only once it is applied, parked or dead-lettered: a crash
   anywhere means a row is looked at again, never skipped.

Everything goes through the same apply step as the broker path, with path="replication"; when both paths
bring the same event, the account locks of the apply step make one of them a counted duplicate.

Polling, not LISTEN: the write side's NOTIFY does not cross logical replication. Every 0.5 s while the broker
path is active (the 2 s grace period dominates the delay anyway), every 0.15 s while it is not. Each round and
each applied batch beats (`heartbeat`: /readyz and /healthz); a failed round beats `round_failed`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from django.db import InterfaceError, OperationalError, connection

from cqrs_common import metrics
from cqrs_common.heartbeat import UNAVAILABLE, Heartbeat
from cqrs_common.logging import get_logger
from read_service.projections.apply import REPLICATION, apply_each, apply_events, parked_ready_drain
from read_service.projections.dead_letters import dead_lettered
from read_service.projections.event_log.replica import (
    replica_cursor_get,
    replica_cursor_set,
    replica_rows_after,
    replica_rows_missing,
)
from read_service.projections.event_log.rows import REPLICA_TABLE, events_read
from read_service.projections.event_log.subscription import STREAMING, subscription_status
from read_service.projections.state import ActivePath, projector_heartbeat

log = get_logger(__name__)

HEARTBEAT_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class FallbackSettings:
    grace_seconds: float = 2.0  # REPLICATION_GRACE_SECONDS
    broker_interval: float = 0.5  # between rounds while the broker path is active
    replication_interval: float = 0.15  # between rounds while it is not
    batch_size: int = 500  # rows per scan query and per apply transaction
    status_interval: float = 5.0  # how often the subscription's state is checked
    table: str = REPLICA_TABLE


class ReplicationFallback:
    def __init__(self, settings: FallbackSettings | None = None) -> None:
        self.settings = settings or FallbackSettings()
        self._recorded_mode: str | None = None  # the mode last written to projector_state
        self._heartbeat_due = 0.0
        self._status: str | None = None
        self._status_due = 0.0
        self.heartbeat = Heartbeat("replication_fallback")

    def run(self, path: ActivePath, halt: threading.Event) -> None:
        """Rounds until `halt` is set; database failures are logged and retried with backoff."""
        log.info("replication_fallback_started", grace_seconds=self.settings.grace_seconds)
        failures = 0
        try:
            while not halt.is_set():
                try:
                    self.round(path.current)
                    failures = 0
                    self.heartbeat.beat("replicating" if path.current == REPLICATION else "filling_gaps")
                except Exception as exc:  # the thread must outlive any failure; the next round retries
                    failures += 1
                    self.heartbeat.beat("round_failed", UNAVAILABLE)
                    metrics.PROJECTOR_FAILURES.labels(component="replication_fallback").inc()
                    log.warning(
                        "replication_fallback_failed",
                        error=f"{type(exc).__name__}: {str(exc).strip()[:500]}",
                        attempt=failures,
                    )
                    connection.close()  # Django opens a fresh connection on the next query
                    self._recorded_mode = None  # write the mode again once the database answers
                    halt.wait(min(MAX_BACKOFF_SECONDS, 0.25 * 2**failures))
                    continue
                interval = self.settings.replication_interval
                if path.current != REPLICATION:
                    interval = self.settings.broker_interval
                path.wait_for_change(interval)
        finally:
            connection.close()
            log.info("replication_fallback_stopped")

    def round(self, mode: str) -> int:
        """One round in `mode` (the active path); returns how many events it applied."""
        self._record_mode(mode)
        self._check_subscription()
        applied = self.fill_gaps()
        # No grace period while the broker path is down: everything is due, whatever the clocks say.
        return applied + self.scan(grace_seconds=None if mode == REPLICATION else self.settings.grace_seconds)

    def fill_gaps(self) -> int:
        applied = len(parked_ready_drain(path=REPLICATION, limit=self.settings.batch_size).applied)
        wires = replica_rows_missing(limit=self.settings.batch_size, table=self.settings.table)
        if not wires:
            return applied
        filled = self._apply(wires)
        log.info("gaps_filled", events=len(wires), applied=filled)
        return applied + filled

    def scan(self, *, grace_seconds: float | None) -> int:
        """Applies due rows past the cursor and moves the cursor; returns how many events were applied."""
        applied = 0
        cursor = replica_cursor_get()
        while True:
            rows = replica_rows_after(
                cursor, grace_seconds=grace_seconds, limit=self.settings.batch_size, table=self.settings.table
            )
            if not rows:
                return applied
            # The first row the broker may still bring: the cursor stops just before it.
            waiting = next((i for i, row in enumerate(rows) if not row.known and not row.due), len(rows))
            due = [row.wire for row in rows if not row.known and row.due]
            if due:
                applied += self._apply(due)
            if waiting > 0:
                cursor = rows[waiting - 1].seq
                replica_cursor_set(cursor)
            if waiting < len(rows) or len(rows) < self.settings.batch_size:
                return applied

    def _apply(self, wires: list[dict[str, Any]]) -> int:
        self.heartbeat.touch()  # a round over a long outage's backlog applies many batches
        batch = events_read(wires)
        try:
            outcome = apply_events(batch.events, path=REPLICATION, refused=batch.refused)
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:  # one row no check foresaw must not hold the fallback back for good
            metrics.PROJECTOR_FAILURES.labels(component="apply").inc()
            log.error("batch_apply_failed", path=REPLICATION, events=len(batch.events), error=str(exc)[:500])
            outcome = apply_each(batch.events, path=REPLICATION, refused=batch.refused)
        for entry in batch.refused:  # committed with the batch: count and log them now
            dead_lettered(entry, source=REPLICATION)
        return len(outcome.applied)

    def _record_mode(self, mode: str) -> None:
        """Writes the mode to projector_state when it changed, and keeps the heartbeat going while the broker
        loop, which beats in broker mode, waits for the broker."""
        now = time.monotonic()
        if mode == self._recorded_mode and (mode != REPLICATION or now < self._heartbeat_due):
            return
        projector_heartbeat(mode=mode)
        self._recorded_mode = mode
        self._heartbeat_due = now + HEARTBEAT_SECONDS

    def _check_subscription(self) -> None:
        now = time.monotonic()
        if now < self._status_due:
            return
        self._status_due = now + self.settings.status_interval
        status = subscription_status(self.settings.table)
        if status.status == self._status:
            return
        if status.status == STREAMING:
            if self._status is not None:
                log.info("replication_stream_resumed", subscription=status.subscription)
        else:
            # The fallback sees nothing new until the stream runs again; the broker path is unaffected.
            log.warning(
                "replication_stream_stopped",
                status=status.status,
                subscription=status.subscription,
                apply_errors=status.apply_errors,
            )
        self._status = status.status
