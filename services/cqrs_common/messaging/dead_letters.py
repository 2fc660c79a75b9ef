"""Dead-letter administration: look at, count, resend and drop the messages of a queue (the `dlq` command).

A mixin of `Consumer`, so one connection both consumes and administers: a replay takes a message from the
dead-letter queue, republishes it with a confirm, then acknowledges it there.
"""

from __future__ import annotations

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.spec import BasicProperties

from cqrs_common.messaging.connection import broker_errors
from cqrs_common.messaging.message import Delivery
from cqrs_common.messaging.topology import DEAD_LETTER_QUEUE, EVENTS_EXCHANGE


class DeadLetterAdministration:
    """Queue administration on the connection and channel of the class it is mixed into (`Consumer`)."""

    _connection: BlockingConnection
    _channel: BlockingChannel
    _publish_channel: BlockingChannel | None

    def get(self, queue: str = DEAD_LETTER_QUEUE) -> Delivery | None:
        """One message from a queue without consuming it (basic.get), or None; settle it like a delivery."""
        with broker_errors():
            method, properties, body = self._channel.basic_get(queue, auto_ack=False)
        return None if method is None else Delivery.from_pika(method, properties, body)

    def message_count(self, queue: str = DEAD_LETTER_QUEUE) -> int:
        """Messages ready in a queue (not counting those delivered and unacknowledged)."""
        with broker_errors():
            return self._channel.queue_declare(queue, passive=True).method.message_count

    def purge(self, queue: str = DEAD_LETTER_QUEUE) -> int:
        """Drops every ready message of a queue; returns how many."""
        with broker_errors():
            return self._channel.queue_purge(queue).method.message_count

    def republish(self, delivery: Delivery, *, exchange: str = EVENTS_EXCHANGE) -> None:
        """Publishes a copy of a delivery (routing key, properties, body) and waits for the confirm.

        For a dead-letter replay: `republish` the message from the DLQ, then `ack` it there. Headers
        (including RabbitMQ's `x-death` history) travel along.
        """
        with broker_errors():
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
