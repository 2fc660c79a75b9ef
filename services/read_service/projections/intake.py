"""The projector's boundary: a delivery from RabbitMQ becomes an event of the contract, or a dead letter.

`event_from_delivery` is the one place that judges a message, body and properties together, and it never
raises: anyone allowed to publish to `cqrs.events` (or a bug on the write side) can send any bytes with any
properties, and the only acceptable outcomes are an event the apply step can store or a dead-letter entry the
record can store. The checks themselves are the contract's (`events.from_wire`); here come the properties:

- `content_type`, when set, is `application/json` (a `charset` parameter, if any, `utf-8`), and
  `content_encoding`, when set, says the body is plain UTF-8: a compressed or otherwise encoded body is not
  an event of this contract (`unsupported_content_type`);
- `message_id` and `type` are only copied into the record (cut to fit); the body is what counts, so a valid
  event is applied even without them.
"""

from __future__ import annotations

from cqrs_common.events import EventEnvelope, InvalidEvent, from_wire
from cqrs_common.logging import get_logger
from cqrs_common.messaging import Delivery
from read_service.projections.dead_letters import DeadLetterEntry

log = get_logger(__name__)

JSON = "application/json"
UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
INVALID_ENVELOPE = "invalid_envelope"
# Content encodings that mean "the bytes as they are" (Celery/kombu, for one, sets "utf-8" on JSON).
_PLAIN_ENCODINGS = frozenset({"", "identity", "utf-8", "utf8"})


def event_from_delivery(delivery: Delivery) -> EventEnvelope | DeadLetterEntry:
    """The delivery's event, or the dead-letter entry that says why it is refused."""
    try:
        _check_content(delivery)
        return from_wire(delivery.body)
    except InvalidEvent as exc:
        return refusal(delivery, exc.reason, exc.detail)
    except Exception as exc:  # a body no check foresaw: refused all the same, the projector goes on
        log.error("delivery_check_failed", message_id=delivery.message_id, exc_info=True)
        return refusal(delivery, INVALID_ENVELOPE, f"{type(exc).__name__}: {str(exc)[:200]}")


def refusal(delivery: Delivery, reason: str, detail: str) -> DeadLetterEntry:
    return DeadLetterEntry(
        message_id=delivery.message_id,
        reason=reason,
        detail=detail,
        event_type=delivery.type,
        routing_key=delivery.routing_key,
    )


def _check_content(delivery: Delivery) -> None:
    if delivery.content_type is not None:
        media, _, parameters = delivery.content_type.partition(";")
        charset = next(
            (value for name, _, value in _parameters(parameters) if name == "charset"), "utf-8"
        ).strip('"')
        if media.strip().lower() != JSON or charset.lower() not in ("utf-8", "utf8"):
            raise InvalidEvent(
                UNSUPPORTED_CONTENT_TYPE, f"content_type {delivery.content_type[:100]!r}, expected {JSON}"
            )
    encoding = delivery.content_encoding
    if encoding is not None and encoding.strip().lower() not in _PLAIN_ENCODINGS:
        raise InvalidEvent(UNSUPPORTED_CONTENT_TYPE, f"content_encoding {encoding[:100]!r}, expected none")


def _parameters(text: str) -> list[tuple[str, str, str]]:
    return [
        (name.strip().lower(), sep, value.strip())
        for name, sep, value in (part.partition("=") for part in text.split(";") if part.strip())
    ]
