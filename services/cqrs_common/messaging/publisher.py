"""The relay's publisher: batches of events in flight at once, confirmed together.

It drives pika's asynchronous SelectConnection in the caller's thread, so a whole batch is in flight at once
and confirmed together (about 10x the throughput of waiting for each confirm), and it hears RabbitMQ's flow
control (connection.blocked) while it waits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pika
import pika.exceptions
from pika.spec import Basic, BasicProperties

from cqrs_common.events import EventEnvelope, to_wire
from cqrs_common.messaging.connection import (
    BrokerError,
    BrokerUnavailable,
    PublishFailed,
    connection_parameters,
)
from cqrs_common.messaging.message import message_properties
from cqrs_common.messaging.topology import EVENTS_EXCHANGE

# How often a long wait asks whether its caller wants to stop.
INTERRUPT_CHECK_SECONDS = 0.2


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
        interrupted: Callable[[], bool] | None = None,
    ) -> None:
        """`on_blocked` hears RabbitMQ's flow control: called with the broker's reason when it blocks this
        connection's publishing (a memory or disk alarm), with None when it lets it go on. Blocked longer than
        the blocked-connection timeout, the connection is closed (a `BrokerUnavailable`).

        `interrupted` is asked every INTERRUPT_CHECK_SECONDS while the publisher waits (to connect, for
        confirms): once it answers true, the wait ends with a `BrokerUnavailable`, so a process told to stop
        (SIGTERM) does not sit out a blocked broker's confirm timeout. The batch in flight is then
        unconfirmed, which its caller treats as unpublished (published again later; consumers deduplicate)."""
        # A cluster's nodes in turn: this publisher tries the node after the previous publisher's (pika's
        # SelectConnection takes one); a relay that lost its node reconnects with a new publisher to the next.
        self._parameters = connection_parameters(url, connection_name=connection_name)[0]
        self._confirm_timeout = confirm_timeout
        self._on_blocked = on_blocked
        self._interrupted = interrupted
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
        # A signal does not end pika's select (Python retries it after the handler), so a long wait looks at
        # `interrupted` on a timer of its own; a single loop pass (sending) does not need one.
        interrupted = False
        check: object | None = None

        def look() -> None:
            nonlocal interrupted, check
            if self._interrupted is not None and self._interrupted():
                interrupted = True
                loop.stop()
            else:
                check = loop.call_later(INTERRUPT_CHECK_SECONDS, look)

        if self._interrupted is not None and timeout > INTERRUPT_CHECK_SECONDS:
            check = loop.call_later(INTERRUPT_CHECK_SECONDS, look)
        self._waiting_for = done
        try:
            while not (done() or self._failure or expired or interrupted):
                loop.start()  # returns when `_wake`, `expire` or `look` calls loop.stop()
        finally:
            self._waiting_for = None
            loop.remove_timeout(timer)
            if check is not None:
                loop.remove_timeout(check)
        if self._failure is not None and not self._closing:
            raise self._failure
        if activity is not None and not done():
            if interrupted:
                raise BrokerUnavailable(f"stop requested while {activity}")
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
