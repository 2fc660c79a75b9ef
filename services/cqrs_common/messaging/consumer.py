"""The projector's consumer: a queue received in batches and settled one by one or up to a tag.

It uses pika's BlockingConnection: the projector's loop (receive a batch, apply, ack) is synchronous.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import BasicProperties

from cqrs_common.messaging.connection import BrokerError, broker_errors, connection_parameters
from cqrs_common.messaging.dead_letters import DeadLetterAdministration
from cqrs_common.messaging.message import Delivery
from cqrs_common.messaging.topology import PROJECTOR_QUEUE, SubscriberQueues, declare_topology


class Consumer(DeadLetterAdministration):
    """The read side's connection: consumes a queue in batches and handles its dead letters.

    Connecting declares the topology (idempotent) unless `declare=False`: the projector's, or with
    `subscriber` that subscriber's queues (and `queue` is its queue); `queue_was_new` then says whether its
    queue had to be created, so events published before now are not in it. `receive` starts consuming with
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
        subscriber: SubscriberQueues | None = None,
    ) -> None:
        self.queue = subscriber.queue if subscriber is not None else queue
        self.queue_was_new = False
        self._prefetch = prefetch
        self._buffer: deque[Delivery] = deque()
        self._consumer_tag: str | None = None
        self._publish_channel: BlockingChannel | None = None
        with broker_errors():
            # Every node of a cluster, in turn: BlockingConnection tries each until one answers.
            self._connection = pika.BlockingConnection(
                connection_parameters(url, connection_name=connection_name)
            )
            try:
                self._channel = self._connection.channel()
                if declare and subscriber is not None:
                    self.queue_was_new = not self._queue_exists(subscriber.queue)
                    subscriber.declare(self._channel)
                elif declare:
                    declare_topology(self._channel)
            except BaseException:
                self._connection.close()
                raise

    @property
    def is_open(self) -> bool:
        return self._connection.is_open and self._channel.is_open

    def _queue_exists(self, queue: str) -> bool:
        """A passive declaration on a channel of its own: RabbitMQ closes a channel that asks for a queue
        that does not exist (404), and that must not be the consuming one."""
        probe = self._connection.channel()
        try:
            probe.queue_declare(queue, passive=True)
            return True
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return False
            raise
        finally:
            if probe.is_open:
                probe.close()

    def delete_subscriber(self, subscriber: SubscriberQueues) -> None:
        """Deletes a subscriber's queues and dead-letter exchange, messages included."""
        with broker_errors():
            subscriber.delete(self._channel)

    def receive(self, max_count: int, timeout: float, idle: float = 0.005) -> list[Delivery]:
        """Up to `max_count` deliveries, in queue order: waits up to `timeout` seconds for the first, then
        collects more until none arrives for `idle` seconds. Returns [] on timeout."""
        with broker_errors():
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
        with broker_errors():
            self._channel.basic_ack(delivery_tag=delivery_tag, multiple=multiple)

    def reject(self, delivery_tag: int) -> None:
        """Refuses a delivery for good: RabbitMQ moves it to the dead-letter queue."""
        with broker_errors():
            self._channel.basic_nack(delivery_tag=delivery_tag, requeue=False)

    def requeue(self, delivery_tag: int) -> None:
        """Returns a delivery to the queue; after DELIVERY_LIMIT returns it is dead-lettered."""
        with broker_errors():
            self._channel.basic_nack(delivery_tag=delivery_tag, requeue=True)

    def process_events(self, time_limit: float = 0.0) -> None:
        """Answers heartbeats while the caller is busy elsewhere for long."""
        with broker_errors():
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
