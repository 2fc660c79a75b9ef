"""Messages published to cqrs.events by hand, with any body: what the relay never publishes (an unparseable
body, an event with bad data, a copy of one already applied), to watch the projector dead-letter or
deduplicate it. Sent through the messaging package's own confirmed publish, as a dead-letter replay is."""

from __future__ import annotations

import time

from cqrs_common.events import routing_key
from cqrs_common.messaging import CORRELATION_HEADER, Consumer, Delivery


def message(body: bytes, event_type: str, message_id: str, correlation_id: str | None = None) -> Delivery:
    """A message as the relay sends an event of `event_type` (persistent, JSON, its routing key, the time
    now), with `body` as it is."""
    return Delivery(
        delivery_tag=0,
        body=body,
        routing_key=routing_key(event_type),
        exchange="",
        redelivered=False,
        message_id=message_id,
        type=event_type,
        content_type="application/json",
        timestamp=int(time.time()),
        headers={CORRELATION_HEADER: correlation_id} if correlation_id else {},
    )


def publish(broker_url: str, delivery: Delivery) -> None:
    """Publishes `delivery` to cqrs.events and returns once RabbitMQ has confirmed it."""
    with Consumer(broker_url, connection_name="devkit-publish", declare=False) as broker:
        broker.republish(delivery)
