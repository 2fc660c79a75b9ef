"""The event contract shared by the write side (which stores and publishes) and the read side (which applies).

`EventEnvelope` is one event as CONTRACT.md puts it on the wire. `to_wire` / `from_wire` are the only
serialisation, so the relay and the projector can never disagree on the format. `from_wire` raises
`InvalidEvent` with a reason that becomes the dead-letter metric's label.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

AGGREGATE_TYPE = "account"
ROUTING_KEY_PREFIX = "account."

# Required data fields per event type and the schema versions the read side understands.
DATA_FIELDS: dict[str, frozenset[str]] = {
    "AccountOpened": frozenset({"owner", "currency"}),
    "MoneyDeposited": frozenset({"amount"}),
    "MoneyWithdrawn": frozenset({"amount"}),
    "TransferDebited": frozenset({"transfer_id", "to_account", "amount"}),
    "TransferCredited": frozenset({"transfer_id", "from_account", "amount"}),
    "AccountClosed": frozenset(),
}
SUPPORTED_SCHEMA_VERSIONS: dict[str, frozenset[int]] = {name: frozenset({1}) for name in DATA_FIELDS}
EVENT_TYPES = frozenset(DATA_FIELDS)


class InvalidEvent(ValueError):
    """A message that is not a valid event of this contract; `reason` labels the dead-letter metric."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class EventEnvelope:
    event_id: UUID
    type: str
    aggregate_id: UUID
    aggregate_version: int
    position: int
    occurred_at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    schema_version: int = 1
    aggregate_type: str = AGGREGATE_TYPE
    correlation_id: str | None = None
    causation_id: str | None = None

    @property
    def routing_key(self) -> str:
        return routing_key(self.type)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": str(self.event_id),
            "type": self.type,
            "schema_version": self.schema_version,
            "aggregate_type": self.aggregate_type,
            "aggregate_id": str(self.aggregate_id),
            "aggregate_version": self.aggregate_version,
            "position": self.position,
            "occurred_at": format_timestamp(self.occurred_at),
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "data": self.data,
        }


def routing_key(event_type: str) -> str:
    return f"{ROUTING_KEY_PREFIX}{event_type}"


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a `Z`, as in the contract's example."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("timestamp without a time zone")
    return moment


def to_wire(event: EventEnvelope) -> bytes:
    return json.dumps(event.to_dict(), separators=(",", ":"), sort_keys=True).encode()


def from_wire(body: bytes | str) -> EventEnvelope:
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent("malformed_json", str(exc)) from exc
    if not isinstance(raw, dict):
        raise InvalidEvent("invalid_envelope", "body is not a JSON object")
    return from_dict(raw)


def from_dict(raw: dict[str, Any]) -> EventEnvelope:
    """Validates a decoded event; raises `InvalidEvent` naming what is wrong."""
    event_type = raw.get("type")
    if event_type not in EVENT_TYPES:
        raise InvalidEvent("unknown_type", f"unknown event type {event_type!r}")
    schema_version = raw.get("schema_version")
    if schema_version not in SUPPORTED_SCHEMA_VERSIONS[event_type]:
        raise InvalidEvent("unsupported_schema_version", f"{event_type} schema_version {schema_version!r}")
    data = raw.get("data")
    if not isinstance(data, dict):
        raise InvalidEvent("invalid_envelope", "data is not an object")
    missing = DATA_FIELDS[event_type] - data.keys()
    if missing:
        raise InvalidEvent("invalid_envelope", f"{event_type} data lacks {sorted(missing)}")
    try:
        version = raw["aggregate_version"]
        position = raw["position"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError("aggregate_version must be a positive integer")
        if not isinstance(position, int) or isinstance(position, bool) or position < 1:
            raise ValueError("position must be a positive integer")
        return EventEnvelope(
            event_id=UUID(str(raw["event_id"])),
            type=event_type,
            schema_version=schema_version,
            aggregate_type=str(raw.get("aggregate_type", AGGREGATE_TYPE)),
            aggregate_id=UUID(str(raw["aggregate_id"])),
            aggregate_version=version,
            position=position,
            occurred_at=parse_timestamp(str(raw["occurred_at"])),
            correlation_id=_optional_str(raw.get("correlation_id")),
            causation_id=_optional_str(raw.get("causation_id")),
            data=data,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidEvent("invalid_envelope", f"{type(exc).__name__}: {exc}") from exc


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)
