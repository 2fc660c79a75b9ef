"""One event as an AMQP message: the properties the publisher sets, and the `Delivery` a consumer receives.

The body is `events.to_wire`; the properties are the ones CONTRACT.md lists, plus the precise publish time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pika
from pika.spec import BasicProperties

from cqrs_common.events import EventEnvelope, format_timestamp, parse_timestamp
from cqrs_common.messaging.topology import AGGREGATE_ID_HEADER

CORRELATION_HEADER = "x-correlation-id"
# The AMQP `timestamp` property has whole seconds; this header carries the publish time to the microsecond
# so the projector's consume-lag histogram (1 ms buckets) means something.
PUBLISHED_AT_HEADER = "x-published-at"


def message_properties(event: EventEnvelope, published_at: datetime) -> BasicProperties:
    """The AMQP properties CONTRACT.md promises for an event (plus the precise publish time)."""
    # The aggregate id is what the projector's partitions are hashed on (topology.py).
    headers: dict[str, Any] = {
        PUBLISHED_AT_HEADER: format_timestamp(published_at),
        AGGREGATE_ID_HEADER: str(event.aggregate_id),
    }
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
    queue: str | None = None  # the queue it came from (a projector reads several)

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
    def from_pika(
        cls, method: Any, properties: BasicProperties, body: bytes, *, queue: str | None = None
    ) -> Delivery:
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
            queue=queue,
        )


def _text(value: str | bytes | None) -> Any:
    """pika hands a short string that is not UTF-8 over as bytes; every property here is text."""
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value
