"""The relay's loop: become leader, drain the outbox in confirmed batches, wait for the next commit.

Order of a batch: read the events after the high-water mark (position order; a drain's first batch also
brings those of recorded gaps that appeared), publish them all, wait for RabbitMQ's confirms, then advance
the mark past them in one short statement that also records the positions the read did not find as gaps
(store.py says how gaps are published or forgotten). The event rows are never written. The next batch is
already on its way while one is recorded. A crash between confirm and advance publishes the batch again on
restart: duplicates, never a gap (the projector ignores duplicates). While RabbitMQ is down the relay retries
with backoff, the write-service keeps accepting commands, and the outbox grows; on reconnect it drains.

The loop beats (`heartbeat`, served as /readyz and /healthz): `leader` on every turn and every confirmed
batch, `standby` while another relay leads, `broker_unavailable` or `database_unavailable` before each retry.
Every wait between two beats is bounded: the idle wait (`poll_interval`), the standby's lock retry, the
backoff, and the database's statements (`statement_timeout`, `lock_timeout`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2
import psycopg2.errors
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential_jitter

from cqrs_common import metrics
from cqrs_common.heartbeat import STANDBY, UNAVAILABLE, Heartbeat
from cqrs_common.logging import get_logger
from cqrs_common.messaging import BrokerError, Publisher
from write_service.outbox.leadership import leadership_holder, leadership_try_acquire
from write_service.outbox.session import Session, session_close, session_listen, session_open, session_wait
from write_service.outbox.store import (
    Advanced,
    Batch,
    ReplicationSlot,
    outbox_advance,
    outbox_after,
    outbox_backlog,
    outbox_pending,
    outbox_progress_ensure,
    replication_slots,
    utc_now,
)

log = get_logger(__name__)

LEADER = "leader"  # the heartbeat's state while the relay leads and publishes (status ok)


@dataclass(frozen=True)
class RelaySettings:
    database: Mapping[str, Any]  # a Django DATABASES entry
    broker_url: str
    name: str = "relay"
    batch_size: int = 1000
    poll_interval: float = 1.0  # fallback when a notification is missed (e.g. after a reconnect)
    standby_interval: float = 1.0  # how often a standby retries the leadership lock
    max_backoff: float = 5.0  # cap of the exponential backoff between broker or database retries
    metrics_interval: float = 1.0  # backlog and WAL retention gauges are refreshed at most this often
    # A relay that falls silent loses the leadership after about `leadership_timeout` seconds (the server ends
    # its session); one that hears nothing from the database for `database_timeout` seconds stands by.
    leadership_timeout: float = 10.0
    database_timeout: float = 20.0
    # A statement that runs or waits for a lock longer fails, and the relay starts over (config.py says why).
    statement_timeout: float = 30.0
    lock_timeout: float = 5.0


class Stopper:
    """A stop request that also wakes a waiting `select`, so SIGTERM is handled at once, not at the next poll.

    `request` is safe to call from a signal handler (it sets a flag and writes one byte to a pipe).
    """

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self.requested = False

    def request(self, *_signal: object) -> None:
        self.requested = True
        with contextlib.suppress(BlockingIOError):  # the pipe already holds a wake-up
            os.write(self._write_fd, b"x")

    def fileno(self) -> int:
        return self._read_fd

    def sleep(self, seconds: float) -> None:
        """Sleeps, returning early when a stop is requested."""
        if not self.requested:
            select.select([self._read_fd], [], [], seconds)


class Relay:
    def __init__(self, settings: RelaySettings, stopper: Stopper | None = None) -> None:
        self.settings = settings
        self.stopper = stopper or Stopper()
        self._session: Session | None = None
        self._publisher: Publisher | None = None
        self._metrics_due = 0.0
        self._lost_slots: set[str] = set()
        self._blocked_since: float | None = None  # when RabbitMQ began to block publishing (an alarm)
        self.heartbeat = Heartbeat("relay")

    def run(self) -> None:
        """Runs until a stop is requested; survives database and broker outages."""
        log.info("relay_started", batch_size=self.settings.batch_size)
        retrying = Retrying(
            retry=retry_if_exception_type(psycopg2.Error),
            wait=self._backoff(),
            stop=self._stop_requested,
            sleep=self.stopper.sleep,
            before_sleep=self._on_database_failure,
            reraise=True,
        )
        try:
            retrying(self._serve)
        except (psycopg2.Error, BrokerError):
            if not self.stopper.requested:
                raise
        finally:
            self.close()
            log.info("relay_stopped")

    def close(self) -> None:
        self._close_publisher()
        session_close(self._session)
        self._session = None

    def drain(self) -> int:
        """Publishes the events after the mark, and those of gaps that appeared, in batches until none is
        left (or a stop); returns how many.

        Pipelined by one batch: while RabbitMQ stores batch n+1, batch n (confirmed) is recorded. A crash
        leaves at most two batches published but not recorded, which are published again.
        """
        session = self._require_session()
        publisher: Publisher | None = None  # connected on the first event: an idle relay needs no broker
        batch_size = self.settings.batch_size
        session.notifies.clear()  # this drain covers every commit announced so far
        published = 0
        in_flight: tuple[Batch, int] | None = None
        while True:
            batch = None
            if not self.stopper.requested:
                if in_flight is None:
                    # Gaps come first and at most `batch_size` of them; any more go out with the next drain.
                    batch = outbox_pending(session, limit=batch_size)
                    self._record_forgotten(batch)
                elif in_flight[0].full:
                    batch = outbox_after(session, after=in_flight[0].through, limit=batch_size)
            sent = None
            if batch is not None and batch.events:
                publisher = publisher or self._connected_publisher()
                sent = (batch, publisher.send(batch.events))
            if in_flight is not None:
                assert publisher is not None  # it sent the batch in flight
                published += self._confirm_and_advance(publisher, *in_flight)
            if sent is None:
                return published
            in_flight = sent

    def _confirm_and_advance(self, publisher: Publisher, batch: Batch, ticket: int) -> int:
        publisher.wait_for_confirms(ticket)
        self._broker_unblocked()  # a confirm proves publishing goes on, whichever connection was blocked
        confirmed_at = utc_now()
        advanced = outbox_advance(self._require_session(), batch)
        self.heartbeat.beat(LEADER)  # a backlog takes many batches: each one is progress
        self._record_published(batch, confirmed_at, advanced)
        self._refresh_gauges()
        return len(batch.events)

    def _serve(self) -> None:
        """One database session: stand by until leader, then publish until stopped or something fails."""
        self.close()
        self._session = session_open(
            self.settings.database,
            application_name=self.settings.name,
            server_timeout=self.settings.leadership_timeout,
            client_timeout=self.settings.database_timeout,
            statement_timeout=self.settings.statement_timeout,
            lock_timeout=self.settings.lock_timeout,
        )
        if not self._await_leadership():
            return
        outbox_progress_ensure(self._session)
        session_listen(self._session)
        self._refresh_gauges(force=True)
        while not self.stopper.requested:
            self.heartbeat.beat(LEADER)
            self._drain_with_retries()
            # Not forced: two more queries after every drain would sit between the next commit and its
            # publication. The gauges follow within `metrics_interval`.
            self._refresh_gauges()
            if self.stopper.requested:
                break
            session_wait(self._session, self.settings.poll_interval, wake_fds=[self.stopper.fileno()])
            self._keep_broker_alive()
            self._refresh_gauges()

    def _await_leadership(self) -> bool:
        session = self._require_session()
        announced = False
        while not self.stopper.requested:
            if leadership_try_acquire(session):
                log.info("relay_leadership_acquired", backend_pid=session.get_backend_pid())
                return True
            self.heartbeat.beat("standby", STANDBY)
            if not announced:
                log.info("relay_standing_by", leader_backend_pid=leadership_holder(session))
                announced = True
            self.stopper.sleep(self.settings.standby_interval)
        return False

    def _drain_with_retries(self) -> int:
        """Drains; while RabbitMQ fails, retries with exponential backoff (the outbox keeps the events)."""
        return Retrying(
            retry=retry_if_exception_type(BrokerError),
            wait=self._backoff(),
            stop=self._stop_requested,
            sleep=self.stopper.sleep,
            before_sleep=self._on_broker_failure,
            reraise=True,
        )(self.drain)

    def _connected_publisher(self) -> Publisher:
        if self._publisher is None or not self._publisher.is_open:
            self._close_publisher()
            publisher = Publisher(
                self.settings.broker_url,
                connection_name=self.settings.name,
                on_blocked=self._on_broker_blocked,
                interrupted=lambda: self.stopper.requested,
            )
            publisher.connect()
            self._publisher = publisher
            log.info("broker_connected")
        return self._publisher

    def _keep_broker_alive(self) -> None:
        """Answers heartbeats while idle; a lost connection is replaced at the next drain."""
        if self._publisher is None:
            return
        try:
            self._publisher.process_events()
        except BrokerError as exc:
            log.warning("broker_connection_failed", error=str(exc))
            self._close_publisher()

    def _on_broker_blocked(self, reason: str | None) -> None:
        """RabbitMQ's flow control: while a resource alarm lasts the batch in flight waits for its confirms
        (until the blocked-connection timeout closes the connection and the relay retries), the outbox keeps
        every event, and the gauge and one log line per episode say why nothing is published."""
        if reason is None:
            self._broker_unblocked()
        elif self._blocked_since is None:
            self._blocked_since = time.monotonic()
            metrics.BROKER_BLOCKED.set(1)
            log.warning("broker_blocked", reason=reason)

    def _broker_unblocked(self) -> None:
        if self._blocked_since is not None:
            log.info("broker_unblocked", blocked_seconds=round(time.monotonic() - self._blocked_since, 2))
            self._blocked_since = None
            metrics.BROKER_BLOCKED.set(0)

    def _close_publisher(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.close()

    def _record_published(self, batch: Batch, confirmed_at: datetime, advanced: Advanced) -> None:
        events = batch.events
        for event_type, count in Counter(event.type for event in events).items():
            metrics.EVENTS_PUBLISHED.labels(type=event_type).inc(count)
        for event in events:
            metrics.PUBLISH_LAG.observe(max((confirmed_at - event.occurred_at).total_seconds(), 0.0))
        # Gaps are named only when there are some: a late commit's event went out (filled), or positions
        # below the mark were not seen (recorded).
        gaps = {"gaps_filled": advanced.gaps_filled, "gaps_recorded": advanced.gaps_recorded}
        log.info(
            "event_published",
            count=len(events),
            first_position=events[0].position,
            last_position=events[-1].position,
            mark=batch.through,
            **{name: count for name, count in gaps.items() if count},
        )
        if not advanced.moved:
            # Someone moved the mark since this batch was read: another relay leading for a moment (a lost
            # session), or a TRUNCATE of `events`. Its events went out; the next drain starts from the mark.
            log.warning("outbox_mark_moved", expected=batch.after, through=batch.through)
        if logging.getLogger(__name__).isEnabledFor(logging.DEBUG):  # skip building 1,000 lines for nothing
            for event in events:
                log.debug(
                    "event_published",
                    event_id=str(event.event_id),
                    position=event.position,
                    type=event.type,
                    aggregate_id=str(event.aggregate_id),
                    aggregate_version=event.aggregate_version,
                    correlation_id=event.correlation_id,
                )

    def _record_forgotten(self, batch: Batch) -> None:
        if batch.forgotten:
            log.info("outbox_gaps_forgotten", count=batch.forgotten, mark=batch.after)

    def _refresh_gauges(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._metrics_due:
            return
        self._metrics_due = now + self.settings.metrics_interval
        session = self._require_session()
        backlog = outbox_backlog(session)
        metrics.OUTBOX_BACKLOG.set(backlog.count)
        metrics.OUTBOX_OLDEST_AGE.set(backlog.oldest_age_seconds(utc_now()))
        slots = replication_slots(session)
        metrics.REPLICATION_SLOT_RETAINED.clear()
        for slot in slots:
            metrics.REPLICATION_SLOT_RETAINED.labels(slot=slot.name).set(slot.retained_bytes)
        self._report_lost_slots(slots)

    def _report_lost_slots(self, slots: list[ReplicationSlot]) -> None:
        """A slot that fell behind by more than max_slot_wal_keep_size is invalidated: its subscription can
        never continue (the read side shows it `stopped`) and must be created anew. Said once per slot."""
        lost = {slot.name for slot in slots if slot.wal_status == "lost"}
        for name in sorted(lost - self._lost_slots):
            log.error("replication_slot_lost", slot=name)
        self._lost_slots = lost

    def _on_broker_failure(self, state: RetryCallState) -> None:
        self.heartbeat.beat("broker_unavailable", UNAVAILABLE)
        self._close_publisher()
        log.warning(
            "broker_connection_failed",
            error=str(state.outcome.exception()) if state.outcome else None,
            attempt=state.attempt_number,
            retry_in_seconds=round(state.upcoming_sleep, 2),
        )
        self._refresh_gauges()  # the backlog grows during an outage; keep showing it

    def _on_database_failure(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self.heartbeat.beat("database_unavailable", UNAVAILABLE)
        # A statement that ran into statement_timeout or lock_timeout: the session is fine, something holds
        # the relay up (a long lock on `events`); starting over on a new session is the same retry.
        timed_out = isinstance(exc, (psycopg2.errors.QueryCanceled, psycopg2.errors.LockNotAvailable))
        log.warning(
            "database_statement_timed_out" if timed_out else "database_connection_failed",
            error=str(exc).strip(),
            attempt=state.attempt_number,
            retry_in_seconds=round(state.upcoming_sleep, 2),
        )
        self.close()

    def _backoff(self) -> wait_exponential_jitter:
        return wait_exponential_jitter(multiplier=0.1, max=self.settings.max_backoff, jitter=0.1)

    def _stop_requested(self, _state: RetryCallState) -> bool:
        return self.stopper.requested

    def _require_session(self) -> Session:
        if self._session is None:
            raise RuntimeError("the relay has no database session")
        return self._session
