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
        (json.dumps(_deposit(schema_version=3)).encode(), "unsupported_schema_version"),
        (json.dumps(_deposit(schema_version=0)).encode(), "unsupported_schema_version"),
        (
            json.dumps(_deposit(type="AccountClosed", schema_version=2, data={})).encode(),
            "unsupported_schema_version",
        ),
        (json.dumps(_deposit(schema_version=2)).encode(), "invalid_envelope"),  # version 2 has a reference
        (json.dumps(_deposit(data={})).encode(), "invalid_envelope"),
        (json.dumps(_deposit(aggregate_version=0)).encode(), "invalid_envelope"),
        (json.dumps(_deposit(aggregate_id="nope")).encode(), "invalid_envelope"),
        (json.dumps(_deposit(occurred_at="2026-01-31T12:00:00")).encode(), "invalid_envelope"),
        # What the read side could not store, or Python could not even compare:
        (json.dumps(_deposit(type=[])).encode(), "unknown_type"),
        (json.dumps(_deposit(schema_version={})).encode(), "unsupported_schema_version"),
        (json.dumps(_deposit(schema_version=True)).encode(), "unsupported_schema_version"),
        (json.dumps(_deposit(aggregate_version=2**31)).encode(), "invalid_envelope"),
        (json.dumps(_deposit(aggregate_version=3.0)).encode(), "invalid_envelope"),
        (json.dumps(_deposit(position=2**63)).encode(), "invalid_envelope"),
        (json.dumps(_deposit(aggregate_id=2**127)).encode(), "invalid_envelope"),
        (json.dumps(_deposit(occurred_at="0001-01-01T00:00:00+05:00")).encode(), "invalid_envelope"),
        (json.dumps(_deposit(data={"amount": "1", "memo": "a\u0000b"})).encode(), "invalid_envelope"),
        (json.dumps(_deposit(data={"amount": "1", "a\u0000": "b"})).encode(), "invalid_envelope"),
        (json.dumps(_deposit(correlation_id="x\ud800")).encode(), "invalid_envelope"),
        (json.dumps(_deposit(data={"amount": "1"})).replace('"1"', "NaN").encode(), "malformed_json"),
        (json.dumps(_deposit(data={"amount": "1"})).replace('"1"', "1e400").encode(), "invalid_envelope"),
        (json.dumps(_deposit(data={"amount": [[[[[[[[["1"]]]]]]]]]})).encode(), "too_deep"),
        (b"[" * 50_000 + b"]" * 50_000, "too_large"),
        (b"[" * 30_000 + b"]" * 30_000, "too_deep"),
        (json.dumps(_deposit()).encode("utf-16"), "malformed_json"),
    ],
)
def test_invalid_messages_are_refused_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as refused:
        from_wire(body)
    assert refused.value.reason == reason
