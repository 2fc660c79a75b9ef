"""RabbitMQ for every process: the topology, the relay's publisher and the projector's consumer.

This is the only module that imports pika. Behind one small API the topology (names, arguments, bindings)
is declared the same way by everyone, a message is built in one place (body from `events.to_wire`, properties
as CONTRACT.md lists them), pika's exceptions never leak (callers catch `BrokerError`), and upgrading or
replacing the client library touches one file.

Topology (CONTRACT.md, "Events")::

    cqrs.events (topic) --account.#--> read-service.projector (quorum)
      --rejected, or returned DELIVERY_LIMIT times--> cqrs.events.dlx (topic) --#--> ...projector.dlq (quorum)

The queues belong to the read side, which declares all of it (`declare_topology`). The write side declares
only the exchange it publishes to and publishes with `mandatory`: an event no queue would take comes back as
`PublishFailed` and stays in the outbox, instead of vanishing into an exchange nobody listens to. That keeps
the write-service's broker user to one exchange (RabbitMQ requires *read* permission on a queue to declare it
with a dead-letter exchange, which would let the write side consume the read side's queue).

Two connection styles, each where it fits:
- `Publisher` drives pika's asynchronous SelectConnection in the caller's thread, so a whole batch is in
  flight at once and confirmed together (about 10x the throughput of waiting for each confirm).
- `Consumer` uses BlockingConnection: the projector's loop (receive a batch, apply, ack) is synchronous.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from cqrs_common.events import EventEnvelope, format_timestamp, parse_timestamp, to_wire

EVENTS_EXCHANGE = "cqrs.events"
DEAD_LETTER_EXCHANGE = "cqrs.events.dlx"
PROJECTOR_QUEUE = "read-service.projector"
DEAD_LETTER_QUEUE = "read-service.projector.dlq"
EVENTS_BINDING_KEY = "account.#"

# A message returned to the queue this many times (consumer crashed or requeued it) is dead-lettered instead
# of blocking the queue forever. High enough that a few projector restarts never dead-letter a good event.
DELIVERY_LIMIT = 20

PROJECTOR_QUEUE_ARGUMENTS: dict[str, Any] = {
    "x-queue-type": "quorum",
    "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
    # No x-dead-letter-routing-key: a dead letter keeps `account.<Type>`, so a replay can publish it back to
    # cqrs.events unchanged; the DLQ is bound to the (topic) DLX with `#` and takes every key.
    "x-delivery-limit": DELIVERY_LIMIT,
    # At-least-once dead-lettering (RabbitMQ >= 3.10): a rejected message leaves the queue only once the DLQ
    # has confirmed it. RabbitMQ requires overflow `reject-publish` for it (no length limit is set).
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}
DEAD_LETTER_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum"}

HEARTBEAT_SECONDS = 30
BLOCKED_CONNECTION_TIMEOUT_SECONDS = 30
CORRELATION_HEADER = "x-correlation-id"
# The AMQP `timestamp` property has whole seconds; this header carries the publish time to the microsecond
# so the projector's consume-lag histogram (1 ms buckets) means something.
PUBLISHED_AT_HEADER = "x-published-at"


class BrokerError(Exception):
    """Any failure talking to RabbitMQ. Callers close, back off, reconnect and retry."""


class BrokerUnavailable(BrokerError):
    """The connection could not be opened, or was lost."""


class PublishFailed(BrokerError):
    """RabbitMQ did not confirm every message of a batch: nacked, returned as unroutable, or timed out."""


def connection_parameters(url: str, *, connection_name: str) -> pika.URLParameters:
    """Parameters from an amqp:// URL; heartbeat and blocked-connection timeout unless the URL sets them.

    The blocked-connection timeout turns a broker resource alarm (disk or memory) into a closed connection,
    and so into a retry, instead of a publisher hanging forever.
    """
    parameters = pika.URLParameters(url)
    query = parse_qs(urlsplit(url).query)
    if "heartbeat" not in query:
        parameters.heartbeat = HEARTBEAT_SECONDS
    if "blocked_connection_timeout" not in query:
        parameters.blocked_connection_timeout = BLOCKED_CONNECTION_TIMEOUT_SECONDS
    # Shown in the management UI next to the connection.
    parameters.client_properties = {"connection_name": connection_name}
    return parameters


def declare_topology(channel: BlockingChannel) -> None:
    """Declares exchanges, queues and bindings; idempotent. Needs the read side's broker permissions.

    The DLQ is declared before the queue that dead-letters into it, so no dead letter is ever unroutable.
    """
    channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True)
    channel.exchange_declare(DEAD_LETTER_EXCHANGE, "topic", durable=True)
    channel.queue_declare(DEAD_LETTER_QUEUE, durable=True, arguments=DEAD_LETTER_QUEUE_ARGUMENTS)
    channel.queue_bind(DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE, routing_key="#")
    channel.queue_declare(PROJECTOR_QUEUE, durable=True, arguments=PROJECTOR_QUEUE_ARGUMENTS)
    channel.queue_bind(PROJECTOR_QUEUE, EVENTS_EXCHANGE, routing_key=EVENTS_BINDING_KEY)


def message_properties(event: EventEnvelope, published_at: datetime) -> BasicProperties:
    """The AMQP properties CONTRACT.md promises for an event (plus the precise publish time)."""
    headers: dict[str, Any] = {PUBLISHED_AT_HEADER: format_timestamp(published_at)}
    if event.correlation_id is not None:
        headers[CORRELATION_HEADER] = event.correlation_id
    return BasicProperties(
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=str(event.event_id),
        type=event.type,
        timestamp=int(published_at.timestamp()),
        headers=headers,
    )


@contextmanager
def _broker_errors() -> Iterator[None]:
    """Translates pika's exceptions into ours, so no caller needs to know pika."""
    try:
        yield
    except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
        raise PublishFailed(f"{type(exc).__name__}: {exc}") from exc
    except (pika.exceptions.AMQPConnectionError, pika.exceptions.ConnectionClosed) as exc:
        raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc
    except (pika.exceptions.AMQPError, OSError) as exc:
        raise BrokerError(f"{type(exc).__name__}: {exc}") from exc


# ------------------------------------------------------------------------------------------------- publisher


class Publisher:
    """Publishes batches of events with publisher confirms; `publish` returns once RabbitMQ has them all.

    Not thread-safe: one thread owns it. The I/O loop runs only inside `connect`, `publish`,
    `process_events` and `close`, so a long-lived publisher calls `process_events` while idle to answer
    heartbeats. After any `BrokerError` the publisher is closed: make a new one to reconnect.
    """

    def __init__(
        self,
        url: str,
        *,
        connection_name: str,
        confirm_timeout: float = 30.0,
        on_blocked: Callable[[str | None], None] | None = None,
    ) -> None:
        """`on_blocked` hears RabbitMQ's flow control: called with the broker's reason when it blocks this
        connection's publishing (a memory or disk alarm), with None when it lets it go on. Blocked longer than
        the blocked-connection timeout, the connection is closed (a `BrokerUnavailable`)."""
        self._parameters = connection_parameters(url, connection_name=connection_name)
        self._confirm_timeout = confirm_timeout
        self._on_blocked = on_blocked
        self._connection: pika.SelectConnection | None = None
        self._channel: Any = None
        self._ready = False
        self._closing = False
        self._failure: BrokerError | None = None
        self._waiting_for: Callable[[], bool] | None = None
        self._next_tag = 0
        self._unconfirmed: dict[int, str] = {}  # delivery tag -> message id
        self._nacked: list[str] = []
        self._returned: list[str] = []

    @property
    def is_open(self) -> bool:
        return self._connection is not None and self._ready and self._failure is None

    def connect(self, timeout: float = 10.0) -> None:
        """Opens the connection and a confirm-mode channel, and declares the events exchange."""
        if self._connection is not None:
            raise RuntimeError("a Publisher connects once; create a new one to reconnect")
        try:
            self._connection = pika.SelectConnection(
                self._parameters,
                on_open_callback=self._on_connection_open,
                on_open_error_callback=self._on_connection_open_error,
                on_close_callback=self._on_connection_closed,
            )
            self._run_until(lambda: self._ready, timeout, "connecting")
        except BrokerError:
            self.close()
            raise

    def publish(self, events: Sequence[EventEnvelope]) -> None:
        """Publishes persistent, mandatory messages and waits for RabbitMQ to confirm every one of them.

        Raises `PublishFailed` if any message was nacked, returned as unroutable, or not confirmed in time;
        the caller must then assume none was delivered (some may have been: consumers deduplicate).
        """
        self.wait_for_confirms(self.send(events))

    def send(self, events: Sequence[EventEnvelope]) -> int:
        """Publishes without waiting for the confirms; returns the ticket to pass to `wait_for_confirms`.

        Lets a caller overlap its own work (the relay marks the previous batch) with RabbitMQ storing this.
        """
        if not self.is_open:
            raise BrokerUnavailable("publisher is not connected")
        published_at = datetime.now(UTC)
        try:
            for event in events:
                self._channel.basic_publish(
                    EVENTS_EXCHANGE,
                    event.routing_key,
                    to_wire(event),
                    message_properties(event, published_at),
                    mandatory=True,
                )
                self._next_tag += 1
                self._unconfirmed[self._next_tag] = str(event.event_id)
            self._run_until(lambda: False, 0.0, None)  # pika only buffers frames; one loop pass sends them
        except pika.exceptions.AMQPError as exc:
            self._fail(BrokerUnavailable(f"{type(exc).__name__}: {exc}"))
        except BrokerError as exc:
            self._fail(exc)
        return self._next_tag

    def wait_for_confirms(self, ticket: int) -> None:
        """Waits until every message sent up to `ticket` is confirmed; raises `PublishFailed` as `publish`.

        A refusal of any message sent so far fails the wait: after one, the caller starts over.
        """
        if not self.is_open:
            raise BrokerUnavailable("publisher is not connected")
        try:
            self._run_until(
                lambda: self._confirmed_through(ticket), self._confirm_timeout, "waiting for confirms"
            )
        except pika.exceptions.AMQPError as exc:
            self._fail(BrokerUnavailable(f"{type(exc).__name__}: {exc}"))
        except BrokerError as exc:
            self._fail(exc)
        if self._nacked or self._returned:
            # The channel is fine; the caller retries the refused messages later.
            failure = PublishFailed(
                f"{len(self._nacked)} nacked, {len(self._returned)} unroutable"
                f" (first: {(self._nacked or self._returned)[0]})"
            )
            self._nacked.clear()
            self._returned.clear()
            raise failure

    def _confirmed_through(self, ticket: int) -> bool:
        # Tags are inserted in increasing order, so the first one left is the oldest unconfirmed.
        return not self._unconfirmed or next(iter(self._unconfirmed)) > ticket

    def process_events(self, time_limit: float = 0.0) -> None:
        """Runs the I/O loop for up to `time_limit` seconds: heartbeats, and noticing a lost connection."""
        if not self.is_open:
            raise BrokerUnavailable("publisher is not connected")
        self._run_until(lambda: False, time_limit, None)

    def close(self, timeout: float = 5.0) -> None:
        """Closes the connection (waiting briefly for the broker's close-ok) and releases the I/O loop."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        self._closing = True
        self._ready = False
        try:
            if connection.is_open:
                connection.close()
            if not connection.is_closed:
                self._connection = connection
                self._run_until(lambda: connection.is_closed, timeout, None)
        except (BrokerError, pika.exceptions.AMQPError):
            pass  # closing anyway
        finally:
            self._connection = None
            connection.ioloop.close()

    # The I/O loop runs in this thread until a condition holds; every pika callback below wakes it.
    def _run_until(self, done: Callable[[], bool], timeout: float, activity: str | None) -> None:
        assert self._connection is not None
        loop = self._connection.ioloop
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            loop.stop()

        timer = loop.call_later(max(timeout, 0.0), expire)
        self._waiting_for = done
        try:
            while not (done() or self._failure or expired):
                loop.start()  # returns when `_wake` or `expire` calls loop.stop()
        finally:
            self._waiting_for = None
            loop.remove_timeout(timer)
        if self._failure is not None and not self._closing:
            raise self._failure
        if activity is not None and not done():
            raise PublishFailed(f"timed out after {timeout}s {activity}")

    def _wake(self) -> None:
        if self._connection is not None and (
            self._failure or (self._waiting_for is not None and self._waiting_for())
        ):
            self._connection.ioloop.stop()

    def _fail(self, failure: BrokerError) -> None:
        if self._failure is None:
            self._failure = failure
        self._ready = False
        self.close()
        raise failure

    def _on_connection_open(self, connection: pika.SelectConnection) -> None:
        connection.add_on_connection_blocked_callback(self._on_connection_blocked)
        connection.add_on_connection_unblocked_callback(self._on_connection_unblocked)
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_connection_blocked(self, _connection: Any, frame: Any) -> None:
        if self._on_blocked is not None:
            self._on_blocked(str(getattr(frame.method, "reason", "") or "unknown"))

    def _on_connection_unblocked(self, _connection: Any, _frame: Any) -> None:
        if self._on_blocked is not None:
            self._on_blocked(None)

    def _on_connection_open_error(self, _connection: Any, error: BaseException | str) -> None:
        self._failure = BrokerUnavailable(f"connection failed: {error!r}")
        self._wake()

    def _on_connection_closed(self, _connection: Any, reason: BaseException) -> None:
        self._ready = False
        if not self._closing and self._failure is None:
            self._failure = BrokerUnavailable(f"connection closed: {reason!r}")
        self._wake()

    def _on_channel_open(self, channel: Any) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_returned)
        channel.exchange_declare(
            EVENTS_EXCHANGE, "topic", durable=True, callback=lambda _frame: self._enable_confirms(channel)
        )

    def _enable_confirms(self, channel: Any) -> None:
        channel.confirm_delivery(ack_nack_callback=self._on_confirmation, callback=self._on_confirm_mode)

    def _on_confirm_mode(self, _frame: Any) -> None:
        self._ready = True
        self._wake()

    def _on_channel_closed(self, _channel: Any, reason: BaseException) -> None:
        # E.g. ACCESS_REFUSED or NOT_FOUND: the broker closed the channel; this connection is done.
        self._ready = False
        if not self._closing and self._failure is None:
            self._failure = BrokerError(f"channel closed: {reason!r}")
        self._wake()

    def _on_returned(self, _channel: Any, _method: Any, properties: BasicProperties, _body: bytes) -> None:
        # RabbitMQ sends basic.return before the ack of an unroutable mandatory message.
        self._returned.append(str(properties.message_id))

    def _on_confirmation(self, frame: Any) -> None:
        method = frame.method
        tags = (
            [tag for tag in self._unconfirmed if tag <= method.delivery_tag]
            if method.multiple
            else [method.delivery_tag]
        )
        for tag in tags:
            message_id = self._unconfirmed.pop(tag, None)
            if isinstance(method, Basic.Nack) and message_id is not None:
                self._nacked.append(message_id)
        self._wake()


# -------------------------------------------------------------------------------------------------- consumer


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message received from a queue; settle it with `Consumer.ack` / `reject` / `requeue`."""

    delivery_tag: int
    body: bytes
    routing_key: str
    exchange: str
    redelivered: bool
    message_id: str | None = None
    type: str | None = None
    content_type: str | None = None
    timestamp: int | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    content_encoding: str | None = None

    @property
    def correlation_id(self) -> str | None:
        value = self.headers.get(CORRELATION_HEADER)
        return None if value is None else str(value)

    @property
    def published_at(self) -> datetime | None:
        """When the relay published it: the precise header, else the whole-second AMQP timestamp."""
        precise = self.headers.get(PUBLISHED_AT_HEADER)
        try:
            if precise is not None:
                return parse_timestamp(str(precise))
        except ValueError:
            pass
        try:
            return None if self.timestamp is None else datetime.fromtimestamp(self.timestamp, UTC)
        except (ValueError, OverflowError, OSError):  # any publisher may set any 64-bit timestamp
            return None

    @property
    def delivery_count(self) -> int:
        """Earlier deliveries of this message (quorum queues count them; 0 on the first)."""
        try:
            return int(self.headers.get("x-delivery-count", 0))
        except (TypeError, ValueError):
            return 0

    @classmethod
    def from_pika(cls, method: Any, properties: BasicProperties, body: bytes) -> Delivery:
        return cls(
            delivery_tag=method.delivery_tag,
            body=body,
            routing_key=_text(method.routing_key),
            exchange=_text(method.exchange),
            redelivered=bool(method.redelivered),
            message_id=_text(properties.message_id),
            type=_text(properties.type),
            content_type=_text(properties.content_type),
            content_encoding=_text(properties.content_encoding),
            timestamp=properties.timestamp,
            headers=dict(properties.headers or {}),
        )


def _text(value: str | bytes | None) -> Any:
    """pika hands a short string that is not UTF-8 over as bytes; every property here is text."""
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value


class Consumer:
    """The read side's connection: consumes a queue in batches and handles its dead letters.

    Connecting declares the topology (idempotent) unless `declare=False`. `receive` starts consuming with
    `prefetch` unacknowledged messages in flight; keep it above the batch size so the next batch is already
    here while the current one is applied. Unacknowledged messages go back to the queue when it closes.
    """

    def __init__(
        self,
        url: str,
        *,
        connection_name: str,
        queue: str = PROJECTOR_QUEUE,
        prefetch: int = 1000,
        declare: bool = True,
    ) -> None:
        self.queue = queue
        self._prefetch = prefetch
        self._buffer: deque[Delivery] = deque()
        self._consumer_tag: str | None = None
        self._publish_channel: BlockingChannel | None = None
        with _broker_errors():
            self._connection = pika.BlockingConnection(
                connection_parameters(url, connection_name=connection_name)
            )
            try:
                self._channel = self._connection.channel()
                if declare:
                    declare_topology(self._channel)
            except BaseException:
                self._connection.close()
                raise

    @property
    def is_open(self) -> bool:
        return self._connection.is_open and self._channel.is_open

    def receive(self, max_count: int, timeout: float, idle: float = 0.005) -> list[Delivery]:
        """Up to `max_count` deliveries, in queue order: waits up to `timeout` seconds for the first, then
        collects more until none arrives for `idle` seconds. Returns [] on timeout."""
        with _broker_errors():
            if self._consumer_tag is None:
                self._channel.basic_qos(prefetch_count=self._prefetch)
                self._consumer_tag = self._channel.basic_consume(self.queue, self._on_message)
            deadline = time.monotonic() + timeout
            while not self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._connection.process_data_events(time_limit=remaining)
            if not self._buffer:
                if self._consumer_tag not in self._channel.consumer_tags:
                    # RabbitMQ cancelled the consumer (its queue was deleted): reconnecting re-declares it.
                    raise BrokerError(f"the broker cancelled the consumer of {self.queue}")
                return []
            while len(self._buffer) < max_count:
                before = len(self._buffer)
                self._connection.process_data_events(time_limit=idle)
                if len(self._buffer) == before:
                    break
        return [self._buffer.popleft() for _ in range(min(max_count, len(self._buffer)))]

    def ack(self, delivery_tag: int, *, multiple: bool = False) -> None:
        """Acknowledges one delivery, or with `multiple` every unsettled one up to and including it."""
        with _broker_errors():
            self._channel.basic_ack(delivery_tag=delivery_tag, multiple=multiple)

    def reject(self, delivery_tag: int) -> None:
        """Refuses a delivery for good: RabbitMQ moves it to the dead-letter queue."""
        with _broker_errors():
            self._channel.basic_nack(delivery_tag=delivery_tag, requeue=False)

    def requeue(self, delivery_tag: int) -> None:
        """Returns a delivery to the queue; after DELIVERY_LIMIT returns it is dead-lettered."""
        with _broker_errors():
            self._channel.basic_nack(delivery_tag=delivery_tag, requeue=True)

    def get(self, queue: str = DEAD_LETTER_QUEUE) -> Delivery | None:
        """One message from a queue without consuming it (basic.get), or None; settle it like a delivery."""
        with _broker_errors():
            method, properties, body = self._channel.basic_get(queue, auto_ack=False)
        return None if method is None else Delivery.from_pika(method, properties, body)

    def message_count(self, queue: str = DEAD_LETTER_QUEUE) -> int:
        """Messages ready in a queue (not counting those delivered and unacknowledged)."""
        with _broker_errors():
            return self._channel.queue_declare(queue, passive=True).method.message_count

    def purge(self, queue: str = DEAD_LETTER_QUEUE) -> int:
        """Drops every ready message of a queue; returns how many."""
        with _broker_errors():
            return self._channel.queue_purge(queue).method.message_count

    def republish(self, delivery: Delivery, *, exchange: str = EVENTS_EXCHANGE) -> None:
        """Publishes a copy of a delivery (routing key, properties, body) and waits for the confirm.

        For a dead-letter replay: `republish` the message from the DLQ, then `ack` it there. Headers
        (including RabbitMQ's `x-death` history) travel along.
        """
        with _broker_errors():
            if self._publish_channel is None or not self._publish_channel.is_open:
                self._publish_channel = self._connection.channel()
                self._publish_channel.confirm_delivery()
            self._publish_channel.basic_publish(
                exchange,
                delivery.routing_key,
                delivery.body,
                BasicProperties(
                    content_type=delivery.content_type,
                    content_encoding=delivery.content_encoding,
                    delivery_mode=pika.DeliveryMode.Persistent,
                    message_id=delivery.message_id,
                    type=delivery.type,
                    timestamp=delivery.timestamp,
                    headers=dict(delivery.headers),
                ),
                mandatory=True,
            )

    def process_events(self, time_limit: float = 0.0) -> None:
        """Answers heartbeats while the caller is busy elsewhere for long."""
        with _broker_errors():
            self._connection.process_data_events(time_limit=time_limit)

    def close(self) -> None:
        """Stops consuming and closes; deliveries not yet acknowledged return to the queue."""
        self._buffer.clear()
        try:
            if self._connection.is_open:
                self._connection.close()
        except pika.exceptions.AMQPError:
            pass  # already gone; nothing is left to release

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _on_message(self, _channel: Any, method: Any, properties: BasicProperties, body: bytes) -> None:
        self._buffer.append(Delivery.from_pika(method, properties, body))
