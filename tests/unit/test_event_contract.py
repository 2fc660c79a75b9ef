"""The wire format of events (CONTRACT.md, "Events"): round trip and every reason a message is refused."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from cqrs_common.events import EventEnvelope, InvalidEvent, from_wire, routing_key, to_wire


def _deposit(**overrides) -> dict:
    body = {
        "event_id": str(uuid.uuid4()),
        "type": "MoneyDeposited",
        "schema_version": 1,
        "aggregate_type": "account",
        "aggregate_id": str(uuid.uuid4()),
        "aggregate_version": 3,
        "position": 1042,
        "occurred_at": "2026-01-31T12:00:00.123456Z",
        "correlation_id": "c-1",
        "causation_id": None,
        "data": {"amount": "10.00"},
    }
    body.update(overrides)
    return body


def test_round_trip_keeps_every_field() -> None:
    event = EventEnvelope(
        event_id=uuid.uuid4(),
        type="TransferDebited",
        aggregate_id=uuid.uuid4(),
        aggregate_version=7,
        position=99,
        occurred_at=datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC),
        data={"transfer_id": str(uuid.uuid4()), "to_account": str(uuid.uuid4()), "amount": "5.00"},
        correlation_id="corr",
        causation_id="cause",
    )
    assert from_wire(to_wire(event)) == event


def test_wire_body_has_exactly_the_contract_keys() -> None:
    event = from_wire(json.dumps(_deposit()))
    assert set(json.loads(to_wire(event))) == {
        "event_id", "type", "schema_version", "aggregate_type", "aggregate_id", "aggregate_version",
        "position", "occurred_at", "correlation_id", "causation_id", "data",
    }  # fmt: skip
    assert json.loads(to_wire(event))["occurred_at"] == "2026-01-31T12:00:00.123456Z"


def test_routing_key_is_account_dot_type() -> None:
    assert routing_key("AccountOpened") == "account.AccountOpened"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b"[1, 2]", "invalid_envelope"),
        (json.dumps(_deposit(type="MoneyPrinted")).encode(), "unknown_type"),
        (json.dumps(_deposit(schema_version=2)).encode(), "unsupported_schema_version"),
        (json.dumps(_deposit(data={})).encode(), "invalid_envelope"),
        (json.dumps(_deposit(aggregate_version=0)).encode(), "invalid_envelope"),
        (json.dumps(_deposit(aggregate_id="nope")).encode(), "invalid_envelope"),
        (json.dumps(_deposit(occurred_at="2026-01-31T12:00:00")).encode(), "invalid_envelope"),
    ],
)
def test_invalid_messages_are_refused_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as refused:
        from_wire(body)
    assert refused.value.reason == reason
