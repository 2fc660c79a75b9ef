"""The event contract shared by the write side (which stores and publishes) and the read side (which applies).

`EventEnvelope` is one event as CONTRACT.md puts it on the wire. `to_wire` / `from_wire` are the only
serialisation, so the relay and the projector can never disagree on the format. `from_wire` raises
`InvalidEvent` with a reason that becomes the dead-letter metric's label.

Every reader's way to an event ends in `from_dict`, which also upcasts an event stored with an older schema
version to its type's current one (`upcasting.py`): whoever reads, and from wherever, sees one shape.

`from_wire` takes untrusted bytes: whatever it returns can be stored by the read side as it is (jsonb, an
integer version, a bigint position, text without NUL) and written back by `to_wire`, and whatever it refuses
is refused with `InvalidEvent`, never with another exception. The bounds below are the read side's columns'.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from cqrs_common.upcasting import UnsupportedSchemaVersion, current_version, upcast

AGGREGATE_TYPE = "account"
ROUTING_KEY_PREFIX = "account."

# Data fields per event type at its current schema version (older versions are upcast before they are
# checked), and the schema versions the read side understands: 1 up to the current one.
DATA_FIELDS: dict[str, frozenset[str]] = {
    "AccountOpened": frozenset({"owner", "currency"}),
    "MoneyDeposited": frozenset({"amount", "reference"}),
    "MoneyWithdrawn": frozenset({"amount"}),
    "TransferDebited": frozenset({"transfer_id", "to_account", "amount"}),
    "TransferCredited": frozenset({"transfer_id", "from_account", "amount"}),
    "AccountClosed": frozenset(),
}
SCHEMA_VERSIONS: dict[str, int] = {name: current_version(name) for name in DATA_FIELDS}
SUPPORTED_SCHEMA_VERSIONS: dict[str, frozenset[int]] = {
    name: frozenset(range(1, current + 1)) for name, current in SCHEMA_VERSIONS.items()
}
EVENT_TYPES = frozenset(DATA_FIELDS)

# A body larger than this is refused before it is parsed: an event is well under 1 KiB, and the REST API
# takes no command body over 64 KiB either.
MAX_BODY_BYTES = 64 * 1024
# Nesting of objects and arrays: an event is 2 deep (envelope, data). Deeper is refused before anything walks
# it recursively (repr, json.dumps, PostgreSQL's jsonb input).
MAX_DEPTH = 8
MAX_VERSION = 2**31 - 1  # the read side's versions are PostgreSQL `integer`
MAX_POSITION = 2**63 - 1  # positions are `bigint`
# PostgreSQL text and jsonb hold neither NUL nor a lone UTF-16 surrogate (and UTF-8 cannot encode one).
_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")


def _short_repr() -> reprlib.Repr:
    """repr() cut short and only 2 levels deep, for values quoted in a refusal's detail."""
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother, short.maxlist, short.maxdict = 2, 80, 80, 4, 4
    return short


_brief = _short_repr().repr


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
    """An event from a message body: UTF-8 JSON (RFC 8259), bounded in size and depth, every string storable
    as PostgreSQL text; raises `InvalidEvent` and nothing else for any body that is not a valid event."""
    if isinstance(body, bytes | bytearray | memoryview):
        if len(body) > MAX_BODY_BYTES:
            raise InvalidEvent("too_large", f"body of {len(body)} bytes, more than {MAX_BODY_BYTES}")
        try:
            body = bytes(body).decode("utf-8")  # strict: json.loads would guess UTF-16 or UTF-32 as well
        except UnicodeDecodeError as exc:
            raise InvalidEvent("malformed_json", f"body is not UTF-8: {exc}") from exc
    elif len(body) > MAX_BODY_BYTES:
        raise InvalidEvent("too_large", f"body of {len(body)} characters, more than {MAX_BODY_BYTES}")
    try:
        raw = json.loads(body, parse_constant=_no_constant)
    except RecursionError as exc:
        raise InvalidEvent("too_deep", f"nested more than {MAX_DEPTH} levels") from exc
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, an integer of more than 4300 digits
        raise InvalidEvent("malformed_json", str(exc)) from exc
    if not isinstance(raw, dict):
        raise InvalidEvent("invalid_envelope", "body is not a JSON object")
    return from_dict(raw)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def check_storable(value: Any) -> None:
    """Raises `InvalidEvent` unless `value` (decoded JSON) is at most MAX_DEPTH deep, its strings (keys too)
    hold no NUL and no lone surrogate, and its numbers are finite.
    Iterative, so no input exhausts the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise InvalidEvent("too_deep", f"nested more than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_text(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise InvalidEvent("invalid_envelope", "a number is out of range (not a finite double)")


def _check_text(text: str) -> None:
    found = _UNSTORABLE_TEXT.search(text)
    if found is not None:
        raise InvalidEvent(
            "invalid_envelope",
            f"a string holds {found.group()!a}, which PostgreSQL cannot store: {_brief(text)}",
        )


def from_dict(raw: dict[str, Any]) -> EventEnvelope:
    """Validates a decoded event; raises `InvalidEvent` naming what is wrong (values in the detail are cut
    short, so a detail stays small whatever the value)."""
    check_storable(raw)
    event_type = raw.get("type")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise InvalidEvent("unknown_type", f"unknown event type {_brief(event_type)}")
    schema_version = raw.get("schema_version")
    if not _is_int(schema_version) or schema_version not in SUPPORTED_SCHEMA_VERSIONS[event_type]:
        raise InvalidEvent(
            "unsupported_schema_version", f"{event_type} schema_version {_brief(schema_version)}"
        )
    data = raw.get("data")
    if not isinstance(data, dict):
        raise InvalidEvent("invalid_envelope", "data is not an object")
    try:
        data = upcast(event_type, schema_version, data)
    except UnsupportedSchemaVersion as exc:  # refused above already; the chain says so again
        raise InvalidEvent("unsupported_schema_version", str(exc)) from exc
    missing = DATA_FIELDS[event_type] - data.keys()
    if missing:
        raise InvalidEvent("invalid_envelope", f"{event_type} data lacks {sorted(missing)}")
    try:
        version = raw["aggregate_version"]
        position = raw["position"]
        if not _is_int(version) or not 1 <= version <= MAX_VERSION:
            raise ValueError(f"aggregate_version must be an integer from 1 to {MAX_VERSION}")
        if not _is_int(position) or not 1 <= position <= MAX_POSITION:
            raise ValueError(f"position must be an integer from 1 to {MAX_POSITION}")
        aggregate_type = raw.get("aggregate_type", AGGREGATE_TYPE)
        if aggregate_type != AGGREGATE_TYPE:
            raise ValueError(f"aggregate_type must be {AGGREGATE_TYPE!r}")
        return EventEnvelope(
            event_id=_uuid(raw["event_id"], "event_id"),
            type=event_type,
            schema_version=SCHEMA_VERSIONS[event_type],
            aggregate_type=AGGREGATE_TYPE,
            aggregate_id=_uuid(raw["aggregate_id"], "aggregate_id"),
            aggregate_version=version,
            position=position,
            occurred_at=_timestamp(raw["occurred_at"]),
            correlation_id=_optional_str(raw.get("correlation_id"), "correlation_id"),
            causation_id=_optional_str(raw.get("causation_id"), "causation_id"),
            data=data,
        )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise InvalidEvent("invalid_envelope", f"{type(exc).__name__}: {str(exc)[:200]}") from exc


def _is_int(value: Any) -> bool:
    """An integer, not a bool (True == 1 in Python) nor a float (3.0 == 3)."""
    return type(value) is int


def _uuid(value: Any, name: str) -> UUID:
    if not isinstance(value, str | UUID):
        raise TypeError(f"{name} must be a string")
    return value if isinstance(value, UUID) else UUID(value)


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str | datetime):
        raise TypeError("occurred_at must be a string")
    moment = parse_timestamp(value) if isinstance(value, str) else value
    format_timestamp(moment)  # raises OverflowError for a moment that has no UTC form (before year 1)
    return moment


def _optional_str(value: Any, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or null")
    return value
