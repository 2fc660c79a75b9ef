"""The projector's consumer: its partition queues received in batches and settled one by one or up to a tag.

It uses pika's BlockingConnection: the projector's loop (receive a batch, apply, ack) is synchronous. All
its queues are consumed on one channel, so one ack-multiple settles a batch whichever queues it came from.
"""

from __future__ import annotations

import functools
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
from cqrs_common.messaging.topology import (
    LEGACY_PROJECTOR_QUEUE,
    ProjectorPartitions,
    SubscriberQueues,
    declare_topology,
    partition_queue,
    retire_queue,
)

NOT_FOUND = 404
# How far past N to look for partition queues left by a larger N (a partition count is not lowered by more).
MAX_SURPLUS_PARTITIONS = 64


class Consumer(DeadLetterAdministration):
    """The read side's connection: consumes queues in batches and handles their dead letters.

    Connecting declares the topology (idempotent) unless `declare=False`: the projector's, with its
    `partitions` (the queues it consumes: those its projector owns at once, the others `standby_delay` seconds
    later; queues being retired at once), or with `subscriber` that subscriber's queues (and `queue` is its
    only queue); `queue_was_new` then says whether its queue had to be created, so events published before
    now are not in it. `receive` starts consuming with `prefetch` unacknowledged messages in flight per queue;
    keep it above the batch size so the next batch is already here while the current one is applied.
    Unacknowledged messages go back to their queues when it closes.
    """

    def __init__(
        self,
        url: str,
        *,
        connection_name: str,
        partitions: ProjectorPartitions | None = None,
        prefetch: int = 1000,
        declare: bool = True,
        subscriber: SubscriberQueues | None = None,
    ) -> None:
        self.partitions = partitions or ProjectorPartitions()
        self.queue_was_new = False
        # (queue, seconds after the first receive when it is subscribed to), in subscription order.
        self._schedule: list[tuple[str, float]] = (
            [(subscriber.queue, 0.0)]
            if subscriber is not None
            else [(q, 0.0) for q in self.partitions.owned]
            + [(q, self.partitions.standby_delay) for q in self.partitions.standby]
        )
        self.retiring: list[str] = []  # queues no longer bound, consumed until empty
        self._connection_name = connection_name
        self._prefetch = prefetch
        self._buffer: deque[Delivery] = deque()
        self._consumers: dict[str, str] = {}  # consumer tag -> queue
        self._started_at: float | None = None
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
                    declare_topology(self._channel, self.partitions.count)
                    self.retiring = self._retire_queues()
                    self._schedule = [(q, 0.0) for q in self.retiring] + self._schedule
            except BaseException:
                self._connection.close()
                raise

    @property
    def queues(self) -> list[str]:
        """Every queue this consumer reads (once subscribed): its partitions or its subscriber queue."""
        return [queue for queue, _ in self._schedule]

    @property
    def queue(self) -> str:
        """The first of `queues`: a subscriber's only queue."""
        return self._schedule[0][0]

    @property
    def subscribed(self) -> list[str]:
        """The queues it has subscribed to so far (a standby partition only after its delay)."""
        return list(self._consumers.values())

    def backlog(self) -> int:
        """Messages ready in all its queues (not counting those delivered and unacknowledged)."""
        return sum(self.message_count(queue) for queue in self.queues)

    def purge_queues(self) -> int:
        """Drops every ready message of all its queues; returns how many."""
        return sum(self.purge(queue) for queue in self.queues)

    def _retire_queues(self) -> list[str]:
        """Unbinds the queues the projector no longer reads, deletes those that are empty and returns the rest
        (to be consumed until empty: a later connection deletes them)."""
        candidates = [LEGACY_PROJECTOR_QUEUE]
        for partition in range(self.partitions.count, self.partitions.count + MAX_SURPLUS_PARTITIONS):
            if not self._queue_exists(partition_queue(partition)):
                break
            candidates.append(partition_queue(partition))
        left = []
        for queue in candidates:
            if not self._queue_exists(queue):
                continue
            retire_queue(self._channel, queue)
            if not self._delete_if_empty(queue):
                left.append(queue)
        return left

    def _delete_if_empty(self, queue: str) -> bool:
        """Deletes a queue that holds no message and that no one consumes (quorum queues refuse RabbitMQ's own
        if-empty delete): a projector still reading it has it deleted by a later connection."""
        with broker_errors():
            declared = self._channel.queue_declare(queue, passive=True).method
        if declared.message_count or declared.consumer_count:
            return False
        self._channel.queue_delete(queue)
        return True

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
            if exc.reply_code == NOT_FOUND:
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
        """Up to `max_count` deliveries, in arrival order: waits up to `timeout` seconds for the first, then
        collects more until none arrives for `idle` seconds. Returns [] on timeout. Subscribes to each queue
        whose time has come (a standby partition after its delay) before it waits."""
        with broker_errors():
            self._subscribe_due()
            deadline = time.monotonic() + timeout
            while not self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._connection.process_data_events(time_limit=remaining)
            if not self._buffer:
                live = self._channel.consumer_tags
                cancelled = [q for tag, q in self._consumers.items() if tag not in live]
                if cancelled:
                    # RabbitMQ cancelled a consumer (its queue was deleted): reconnecting re-declares it.
                    raise BrokerError(f"the broker cancelled the consumer of {', '.join(cancelled)}")
                return []
            while len(self._buffer) < max_count:
                before = len(self._buffer)
                self._connection.process_data_events(time_limit=idle)
                if len(self._buffer) == before:
                    break
        return [self._buffer.popleft() for _ in range(min(max_count, len(self._buffer)))]

    def _subscribe_due(self) -> None:
        now = time.monotonic()
        if self._started_at is None:
            self._started_at = now
            self._channel.basic_qos(prefetch_count=self._prefetch)  # per consumer: each queue has its own
        subscribed = set(self._consumers.values())
        for queue, delay in self._schedule:
            if queue not in subscribed and now - self._started_at >= delay:
                # The tag names the connection and the queue, as `rabbitmqctl list_consumers` shows them.
                tag = f"{self._connection_name}:{queue}"
                self._channel.basic_consume(
                    queue, functools.partial(self._on_message, queue), consumer_tag=tag
                )
                self._consumers[tag] = queue

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

    def _on_message(
        self, queue: str, _channel: Any, method: Any, properties: BasicProperties, body: bytes
    ) -> None:
        self._buffer.append(Delivery.from_pika(method, properties, body, queue=queue))
