"""The projector: RabbitMQ -> the apply step -> read DB, in batches, acknowledging only what is committed.

One loop: `receive` up to `batch_size` deliveries (the first waits; the rest are only those already here, so
a lone event is applied at once and a backlog is taken in big batches), parse each, apply the batch with
its dead-letter records in ONE read-DB transaction (`apply_events`), and only after the commit settle the
messages: every refused one is rejected (RabbitMQ moves it to the dead-letter queue), then everything else
is acknowledged with one ack-multiple. A crash anywhere before the ack means redelivery, and redelivered
events are duplicates that the apply step ignores: exactly once in effect.

Refused: a message that is not a valid event of the contract, whatever its body and properties
(`intake.event_from_delivery`: its reason labels the metric), and an event whose handler failed. The loop
keeps going after either, and the batch's other messages are applied and acknowledged as usual: a refused
message is never requeued, so its neighbours never count toward the queue's delivery limit because of it.
If applying the batch fails in a way no check foresaw, the batch is applied again one event per transaction
(`apply_each`) and only the event that still fails is refused (`apply_failed`). Any other unforeseen failure
of the loop is logged and counted (`cqrs_projector_failures_total{component="consumer"}`), and the loop
reconnects after a backoff: the process never exits for it.

Failures of the infrastructure never refuse a message: a lost broker connection is reopened with backoff
(the unacknowledged batch comes back by itself), a failing database is retried with backoff while the batch
is held. `stop` (set on SIGTERM) ends the loop once the batch in hand is committed and acknowledged.

With a `fallback` (the management command always gives one), the replication path runs beside the loop in
its own thread (`fallback.py`): it fills what the broker has not delivered within a grace period, and while
the loop has no broker connection the active path is `replication` and the fallback applies everything the
replicated log brings at once; the loop switches back to `broker` as soon as it is connected again.

The broker path reads the projector's partition queues (`cqrs_common.messaging.topology`): each has one
active consumer, so the events of an account reach one projector, in order. Which partitions this one is
active on shows once it receives from them: the first delivery of a partition on a connection is logged
(`partition_active`) and sets `cqrs_projector_partition_active{partition}`; losing the connection releases
them all (`partitions_released`), and RabbitMQ hands them to a standby.

Both loops beat (`heartbeat`, served as /readyz and /healthz): this one `consuming` on every turn (a receive
waits at most `receive_timeout`), `database_unavailable` before each retry of a batch, `broker_unavailable`
before each reconnection (ready all the same with a fallback: it carries the projection meanwhile). Its
database statements are bounded by the session's statement and lock timeouts (`session_timeouts`), so a loop
that stops beating is stuck where nothing bounds it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

from django.db import DatabaseError, InterfaceError, OperationalError, connection
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential_jitter

from cqrs_common import metrics
from cqrs_common.events import EventEnvelope
from cqrs_common.heartbeat import OK, UNAVAILABLE, Heartbeat
from cqrs_common.logging import get_logger
from cqrs_common.messaging import AGGREGATE_ID_HEADER, BrokerError, Consumer, Delivery, partition_of
from read_service.projections.apply import BROKER, REPLICATION, ApplyOutcome, apply_each, apply_events
from read_service.projections.dead_letters import DeadLetterEntry, dead_lettered
from read_service.projections.fallback import ReplicationFallback
from read_service.projections.intake import event_from_delivery, refusal
from read_service.projections.state import ActivePath, projector_heartbeat
from read_service.worker import run_until_stopped

log = get_logger(__name__)
_stdlib_log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0


class Projector:
    def __init__(
        self,
        connect: Callable[[], Consumer],
        *,
        batch_size: int = 500,
        receive_timeout: float = 1.0,
        fallback: ReplicationFallback | None = None,
    ) -> None:
        self._connect = connect
        self._batch_size = batch_size
        self._receive_timeout = receive_timeout
        self._fallback = fallback
        self._last_heartbeat = 0.0
        self._active_partitions: set[int] = set()
        self.path = ActivePath()
        self.heartbeat = Heartbeat("consumer")

    def run(self, stop: threading.Event) -> None:
        """Consumes until `stop` is set; reconnects to the broker with backoff whenever it is lost."""
        log.info("projector_started", batch_size=self._batch_size, fallback=self._fallback is not None)
        halt = threading.Event()  # the fallback stops with the loop, however the loop ends
        fallback = None
        if self._fallback is not None:
            fallback = threading.Thread(
                target=self._fallback.run, args=(self.path, halt), name="replication-fallback", daemon=True
            )
            fallback.start()
        log_failure = _log_retry("broker_connection_failed")

        def on_failure(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, BrokerError):
                self.heartbeat.beat("broker_unavailable", OK if self._fallback is not None else UNAVAILABLE)
                log_failure(state)
                self._use_path(REPLICATION)
                return
            self.heartbeat.beat("loop_failed", UNAVAILABLE)
            # Not the broker: a failure nobody foresaw. The process stays up; unacknowledged messages go
            # back to the queue with the connection and the loop starts over after the backoff.
            metrics.PROJECTOR_FAILURES.labels(component="consumer").inc()
            log.error(
                "projector_loop_failed",
                attempt=state.attempt_number,
                retry_in=round(state.upcoming_sleep, 2),
                exc_info=error,
            )
            connection.close()

        try:
            run_until_stopped(self._consume_until, stop, on_failure)
        finally:
            halt.set()
            if fallback is not None:
                fallback.join(timeout=30)
            connection.close()
            log.info("projector_stopped")

    def _use_path(self, path: str) -> None:
        """Without a fallback there is no other path: the mode stays `broker`."""
        if self._fallback is not None and self.path.use(path):
            log.info("projection_path_switched", path=path)

    def _consume_until(self, stop: threading.Event) -> None:
        consumer = self._connect()
        partitions = consumer.partitions
        metrics.set_partitions_active(partitions.count, set())
        log.info(
            "broker_connected",
            partitions=partitions.count,
            ordinal=partitions.ordinal,
            replicas=partitions.replicas,
            owned=[partition_of(q) for q in partitions.owned],
            retiring=consumer.retiring,
        )
        self._use_path(BROKER)
        try:
            while not stop.is_set():
                self.heartbeat.beat("consuming")
                self._heartbeat()
                deliveries = consumer.receive(self._batch_size, timeout=self._receive_timeout, idle=0.0)
                if not deliveries:
                    continue
                self._note_partitions(partitions.count, deliveries)
                try:
                    self.handle(consumer, deliveries, stop)
                except (OperationalError, InterfaceError):
                    if not stop.is_set():
                        raise
                    # Stopping while the database is away: the batch goes back to the queue on close.
                    log.warning("batch_abandoned", deliveries=len(deliveries))
                    return
        finally:
            consumer.close()
            if self._active_partitions:
                log.info("partitions_released", partitions=sorted(self._active_partitions))
            self._active_partitions.clear()
            metrics.set_partitions_active(partitions.count, set())

    def _note_partitions(self, count: int, deliveries: Sequence[Delivery]) -> None:
        """Counts deliveries per partition; a partition's first on this connection makes it active here (with
        one active consumer per partition, only the active one receives)."""
        received = Counter(partition_of(delivery.queue) for delivery in deliveries)
        if _stdlib_log.isEnabledFor(logging.DEBUG):  # which accounts each partition holds (the scale lab)
            accounts: dict[int | None, set[str]] = defaultdict(set)
            for delivery in deliveries:
                accounts[partition_of(delivery.queue)].add(str(delivery.headers.get(AGGREGATE_ID_HEADER)))
            log.debug("partition_accounts", accounts={p: sorted(a) for p, a in accounts.items()})
        for partition, n in received.items():
            if partition is None:
                continue  # a queue being retired
            metrics.PARTITION_DELIVERIES.labels(partition=str(partition)).inc(n)
            if partition not in self._active_partitions:
                self._active_partitions.add(partition)
                metrics.PARTITION_ACTIVE.labels(partition=str(partition)).set(1)
                log.info("partition_active", partition=partition, active=sorted(self._active_partitions))

    def handle(self, consumer: Consumer, deliveries: Sequence[Delivery], stop: threading.Event) -> None:
        """Applies one batch, commits, then rejects the refused deliveries and acknowledges the rest."""
        events: list[EventEnvelope] = []
        delivery_of: dict[int, Delivery] = {}  # id(event) -> its delivery
        refused: list[tuple[Delivery, DeadLetterEntry]] = []
        for delivery in deliveries:
            parsed = event_from_delivery(delivery)
            if isinstance(parsed, DeadLetterEntry):
                refused.append((delivery, parsed))
                continue
            events.append(parsed)
            delivery_of[id(parsed)] = delivery

        entries = [entry for _, entry in refused]
        try:
            outcome = self._apply_with_retry(apply_events, consumer, events, entries, stop)
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:
            metrics.PROJECTOR_FAILURES.labels(component="apply").inc()
            log.error("batch_apply_failed", path=BROKER, events=len(events), error=str(exc)[:500])
            outcome = self._apply_with_retry(apply_each, consumer, events, entries, stop)
        applied_at = time.time()

        refused += [
            (
                delivery_of[id(failure.event)],
                refusal(delivery_of[id(failure.event)], failure.reason, failure.detail),
            )
            for failure in outcome.failures_to_reject(BROKER)
        ]
        for delivery, entry in refused:
            consumer.reject(delivery.delivery_tag)
            dead_lettered(entry, correlation_id=delivery.correlation_id)
        refused_tags = {delivery.delivery_tag for delivery, _ in refused}
        accepted = [d.delivery_tag for d in deliveries if d.delivery_tag not in refused_tags]
        if accepted:
            consumer.ack(max(accepted), multiple=True)
        for item in outcome.applied:
            delivery = delivery_of.get(id(item.event))
            published_at = delivery.published_at if delivery else None
            if published_at is not None:
                metrics.CONSUME_LAG.observe(max(0.0, applied_at - published_at.timestamp()))

    def _apply_with_retry(
        self,
        apply: Callable[..., ApplyOutcome],
        consumer: Consumer,
        events: list[EventEnvelope],
        refused: list[DeadLetterEntry],
        stop: threading.Event,
    ) -> ApplyOutcome:
        """The batch's one transaction, dead-letter records included; retried while the database is
        unreachable (the batch stays held, unacknowledged)."""
        log_failure = _log_retry("database_unavailable", reconnect=True)

        def on_failure(state: RetryCallState) -> None:
            # Also a statement cancelled by statement_timeout or lock_timeout: retried as a lost database is.
            self.heartbeat.beat("database_unavailable", UNAVAILABLE)
            log_failure(state)

        retrying = Retrying(
            retry=retry_if_exception_type((OperationalError, InterfaceError)),
            wait=wait_exponential_jitter(multiplier=0.1, max=5.0),
            stop=lambda _state: stop.is_set(),
            sleep=lambda seconds: _keep_alive(consumer, seconds),
            before_sleep=on_failure,
            reraise=True,
        )
        return retrying(apply, events, path=BROKER, refused=refused)

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._last_heartbeat < HEARTBEAT_SECONDS:
            return
        try:
            projector_heartbeat(mode=BROKER)
        except DatabaseError as exc:  # the next batch will retry the database anyway
            log.warning("heartbeat_failed", error=str(exc))
            connection.close()
        self._last_heartbeat = now


def _keep_alive(consumer: Consumer, seconds: float) -> None:
    """Sleeps while answering the broker's heartbeats, so the held batch is not handed to someone else."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            consumer.process_events(time_limit=remaining)
        except BrokerError:
            time.sleep(remaining)  # the batch returns to the queue anyway; finish the backoff


def _log_retry(event: str, *, reconnect: bool = False) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            event, attempt=state.attempt_number, error=str(error), retry_in=round(state.upcoming_sleep, 2)
        )
        if reconnect:
            connection.close()  # Django opens a fresh connection on the next query

    return before_sleep
