"""The reporting subscriber: its queue bound first, then history from the log, then live from the queue.

1. Connect and declare its queue (`Consumer(subscriber=...)`): from that moment every event published is
   kept in the queue while nothing consumes it yet.
2. Catch up (phase `catching_up`): read the log (history.py) from its cursor in commit order, a batch per
   transaction, counting each event once (counting.py) and moving the cursor in the same transaction. The
   connection stays open (its heartbeats answered); the queue just fills.
3. Switch once the log is read to its end and a row committed after the bind was among those read
   (history.py explains why nothing can be missing then). From now on only the queue is read.
4. Live (phase `live`): receive a batch, count it in one transaction, then settle: refused messages are
   rejected to its own dead-letter queue, the rest acknowledged with one ack-multiple. The first deliveries
   after the switch are mostly events the log already brought: they are skipped as duplicates (their ids are
   counted already), acknowledged, and counted in `cqrs_reporting_events_duplicate_total{path="live"}`.

A crash anywhere repeats at most one batch, which the counted ids absorb. A lost broker or database is
retried with backoff (the loop beats `broker_unavailable` or `database_unavailable`, and is unready: unlike
the projector it has no other path); any other failure is logged and the loop starts over after a backoff.
Its heartbeat is served as /readyz and /healthz on its metrics port, like the projector's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.db import InterfaceError, OperationalError, connection
from tenacity import RetryCallState

from cqrs_common import metrics
from cqrs_common.events import EventEnvelope
from cqrs_common.heartbeat import UNAVAILABLE, Heartbeat
from cqrs_common.logging import get_logger
from cqrs_common.messaging import BrokerError, Consumer, Delivery
from read_service.projections.dead_letters import DeadLetterEntry
from read_service.projections.intake import event_from_delivery
from read_service.reporting.counting import Counted, events_count
from read_service.reporting.history import fence_passed, history_after, history_unread
from read_service.reporting.models import CATCHING_UP, HISTORY, LIVE, LIVE_PATH
from read_service.reporting.state import State, state_start, state_switch_to_live
from read_service.worker import run_until_stopped

log = get_logger(__name__)

UNKNOWN_ACCOUNT = "unknown_account"
# How often the lag in events is measured (a count over the log's unread rows, or the queue's depth).
LAG_EVERY_SECONDS = 2.0


@dataclass(frozen=True)
class SubscriberSettings:
    subscription: str
    batch_size: int = 500
    receive_timeout: float = 1.0
    idle_seconds: float = 0.5  # the pause of a catch-up that has read the log to its end


class ReportingSubscriber:
    def __init__(self, connect: Callable[[], Consumer], settings: SubscriberSettings) -> None:
        self._connect = connect
        self.settings = settings
        self.heartbeat = Heartbeat("subscriber")
        self._lag_measured_at = 0.0

    @property
    def subscription(self) -> str:
        return self.settings.subscription

    def run(self, stop: threading.Event) -> None:
        """Counts until `stop` is set; starts over with backoff after any failure."""
        log.info("reporting_started", subscription=self.subscription, batch_size=self.settings.batch_size)

        def on_failure(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            beat = (
                "broker_unavailable"
                if isinstance(error, BrokerError)
                else "database_unavailable"
                if isinstance(error, OperationalError | InterfaceError)
                else "loop_failed"
            )
            self.heartbeat.beat(beat, UNAVAILABLE)
            event = "reporting_loop_failed" if beat == "loop_failed" else beat
            log.warning(
                event,
                attempt=state.attempt_number,
                error=str(error)[:500],
                retry_in=round(state.upcoming_sleep, 2),
            )
            connection.close()  # Django opens a fresh one on the next query

        try:
            run_until_stopped(self._run_once, stop, on_failure)
        finally:
            connection.close()
            log.info("reporting_stopped", subscription=self.subscription)

    def _run_once(self, stop: threading.Event) -> None:
        consumer = self._connect()
        try:
            state = state_start(self.subscription, queue_was_new=consumer.queue_was_new)
            log.info(
                "reporting_subscribed",
                subscription=self.subscription,
                queue=consumer.queue,
                queue_was_new=consumer.queue_was_new,
                phase=state.phase,
                replica_seq=state.replica_seq,
            )
            if state.catching_up and not self._catch_up(consumer, state, stop):
                return
            metrics.set_reporting_phase(LIVE)
            while not stop.is_set():
                self.heartbeat.beat(LIVE)
                deliveries = consumer.receive(
                    self.settings.batch_size, timeout=self.settings.receive_timeout, idle=0.0
                )
                self._measure_lag(lambda: consumer.message_count(consumer.queue), idle=not deliveries)
                if deliveries:
                    self.handle(consumer, deliveries)
        finally:
            consumer.close()

    def _catch_up(self, consumer: Consumer, state: State, stop: threading.Event) -> bool:
        """Reads the log until the switch; False if stopped before it."""
        metrics.set_reporting_phase(CATCHING_UP)
        cursor = state.replica_seq
        past_fence = cursor > 0 and fence_passed(cursor, bound_at=state.bound_at)
        read = 0
        started = time.monotonic()
        while not stop.is_set():
            self.heartbeat.beat(CATCHING_UP)
            batch = history_after(cursor, bound_at=state.bound_at, limit=self.settings.batch_size)
            if batch.last_seq is None:
                if past_fence:
                    state_switch_to_live(self.subscription)
                    log.info(
                        "reporting_switched_to_live",
                        subscription=self.subscription,
                        history_events=read,
                        replica_seq=cursor,
                        seconds=round(time.monotonic() - started, 3),
                    )
                    return True
                self._measure_lag(lambda: consumer.message_count(consumer.queue), idle=True)
                consumer.process_events(time_limit=self.settings.idle_seconds)
                continue
            counted = events_count(self.subscription, batch.events, path=HISTORY, replica_seq=batch.last_seq)
            self._observe(counted, HISTORY)
            for entry in batch.refused:
                metrics.REPORTING_EVENTS_DEAD_LETTERED.labels(reason=entry.reason).inc()
                log.warning("reporting_row_refused", reason=entry.reason, event_id=entry.message_id)
            for event in counted.unknown_account:
                metrics.REPORTING_EVENTS_DEAD_LETTERED.labels(reason=UNKNOWN_ACCOUNT).inc()
                log.warning("reporting_row_refused", reason=UNKNOWN_ACCOUNT, event_id=str(event.event_id))
            cursor = batch.last_seq
            read += len(counted.counted)
            past_fence = past_fence or batch.past_fence
            self._measure_lag(lambda c=cursor: history_unread(c), idle=False)
            consumer.process_events()  # heartbeats of the connection whose queue fills meanwhile
        return False

    def handle(self, consumer: Consumer, deliveries: Sequence[Delivery]) -> Counted:
        """Counts a batch of deliveries, commits, then rejects the refused ones and acknowledges the rest."""
        events: list[EventEnvelope] = []
        delivery_of: dict[object, Delivery] = {}
        refused: list[tuple[Delivery, str, str]] = []
        for delivery in deliveries:
            parsed = event_from_delivery(delivery)
            if isinstance(parsed, DeadLetterEntry):
                refused.append((delivery, parsed.reason, parsed.detail))
                continue
            events.append(parsed)
            delivery_of.setdefault(parsed.event_id, delivery)
        counted = events_count(self.subscription, events, path=LIVE_PATH)
        refused += [
            (delivery_of[event.event_id], UNKNOWN_ACCOUNT, f"no AccountOpened of {event.aggregate_id}")
            for event in counted.unknown_account
        ]
        for delivery, reason, detail in refused:
            consumer.reject(delivery.delivery_tag)
            metrics.REPORTING_EVENTS_DEAD_LETTERED.labels(reason=reason).inc()
            log.warning(
                "reporting_event_dead_lettered",
                reason=reason,
                message_id=delivery.message_id,
                routing_key=delivery.routing_key,
                detail=detail,
            )
        refused_tags = {delivery.delivery_tag for delivery, _, _ in refused}
        accepted = [d.delivery_tag for d in deliveries if d.delivery_tag not in refused_tags]
        if accepted:
            consumer.ack(max(accepted), multiple=True)
        self._observe(counted, LIVE_PATH)
        return counted

    def _observe(self, counted: Counted, path: str) -> None:
        for event in counted.counted:
            metrics.REPORTING_EVENTS_COUNTED.labels(type=event.type, path=path).inc()
        if counted.duplicates:
            metrics.REPORTING_EVENTS_DUPLICATE.labels(path=path).inc(len(counted.duplicates))
        if counted.counted:
            newest = max(event.occurred_at for event in counted.counted)
            metrics.REPORTING_LAG_SECONDS.set(max(0.0, time.time() - newest.timestamp()))
        log.info(
            "reporting_batch_counted",
            path=path,
            counted=len(counted.counted),
            duplicates=len(counted.duplicates),
            unknown_account=len(counted.unknown_account),
        )

    def _measure_lag(self, waiting: Callable[[], int], *, idle: bool) -> None:
        if idle:
            metrics.REPORTING_LAG_SECONDS.set(0)
        now = time.monotonic()
        if now - self._lag_measured_at >= LAG_EVERY_SECONDS:
            metrics.REPORTING_LAG_EVENTS.set(waiting())
            self._lag_measured_at = now
