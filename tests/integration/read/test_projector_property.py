"""Property: whatever is published to cqrs.events, the projector keeps running, applies every valid event
exactly once and accounts for every message (applied, ignored as a duplicate, parked, or dead-lettered).

Hypothesis generates each example's messages: hostile ones (random bytes, random JSON, valid events with one
field replaced by a hostile value or raw token, other encodings, deep nesting) with random AMQP properties,
interleaved in any order with the valid events of two accounts (some sent twice) that carry odd but acceptable
properties. The example is published to the real broker and the projector (a thread, as in the other tests)
applies it to the real read DB. Then, for that example:

- every message is accounted for: applied + duplicates + newly parked + dead-lettered == published;
- every dead letter is in the DLQ and has its record;
- each account's read model equals the fold of its valid events, and nothing of it is left parked;
- the projector is still running.

Hostile messages that happen to be valid events use fresh account ids, so they can never change the tracked
accounts. About 2,800 messages in all.
"""

from __future__ import annotations

import gzip
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from cqrs_common.events import EVENT_TYPES, to_wire
from cqrs_common.messaging import DEAD_LETTER_QUEUE
from devkit.polling import eventually
from read_service.projections.models import AccountView, DeadLetter
from tests.integration.read.conftest import AccountHistory

EXAMPLES = 60

# ------------------------------------------------------------------------------------------- the messages

SHORT_TEXT = st.text(max_size=40)  # AMQP short strings: at most 255 bytes once encoded
SHORT_STRING = st.none() | SHORT_TEXT | st.binary(max_size=60)
JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
# Raw JSON text `json.dumps` never writes, or values PostgreSQL cannot store.
RAW_TOKENS = st.sampled_from(
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "1e400",
        '"a\\u0000b"',
        '"x\\ud800y"',
        '"\\udfff"',
        str(2**31),
        str(2**63),
        "-1",
        "0",
        "true",
        "3.0",
        "{}",
        "[]",
        '"9999-12-31T23:59:59-23:59"',
        '"0001-01-01T00:00:00+05:00"',
        f'"{"x" * 70_000}"',
        "1" * 5000,
    ]
)
FIELDS = [
    "event_id", "type", "schema_version", "aggregate_type", "aggregate_id", "aggregate_version", "position",
    "occurred_at", "correlation_id", "causation_id", "data", "data.amount", "data.owner", "data.extra",
]  # fmt: skip
_TOKEN = "__raw_token__"  # ASCII: json.dumps leaves it as it is, so it can be replaced
_DELETE = object()


def _wire(event_type: str, version: int) -> dict[str, Any]:
    """A valid event of a fresh account (never one of the tracked ones)."""
    data = {
        "AccountOpened": {"owner": "mallory", "currency": "EUR"},
        "TransferDebited": {"transfer_id": str(uuid.uuid4()), "to_account": str(uuid.uuid4()), "amount": "1"},
        "TransferCredited": {
            "transfer_id": str(uuid.uuid4()),
            "from_account": str(uuid.uuid4()),
            "amount": "1",
        },
        "AccountClosed": {},
    }.get(event_type, {"amount": "1.00"})
    return {
        "event_id": str(uuid.uuid4()), "type": event_type, "schema_version": 1, "aggregate_type": "account",
        "aggregate_id": str(uuid.uuid4()), "aggregate_version": version, "position": 1,
        "occurred_at": "2026-01-31T12:00:00.000001Z", "correlation_id": None, "causation_id": None,
        "data": data,
    }  # fmt: skip


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    wire = _wire(draw(st.sampled_from(sorted(EVENT_TYPES))), draw(st.integers(1, 3)))
    field = draw(st.sampled_from(FIELDS))
    replacement = draw(st.one_of(JSON_VALUE, RAW_TOKENS.map(lambda token: (_TOKEN, token)), st.just(_DELETE)))
    target, key = (wire["data"], field[5:]) if field.startswith("data.") else (wire, field)
    token = None
    if replacement is _DELETE:
        target.pop(key, None)
    elif isinstance(replacement, tuple):
        target[key], token = _TOKEN, replacement[1]
    else:
        target[key] = replacement
    text = json.dumps(wire)
    return (text.replace(f'"{_TOKEN}"', token) if token else text).encode()


@st.composite
def encoded_events(draw: st.DrawFn) -> bytes:
    text = json.dumps(_wire("MoneyDeposited", 2), ensure_ascii=False).replace("1.00", "1.00\u00e9")
    encode = draw(st.sampled_from(["utf-16", "utf-32", "latin-1", "utf-8-sig", "gzip"]))
    return gzip.compress(text.encode()) if encode == "gzip" else text.encode(encode)


BODIES = st.one_of(
    st.binary(max_size=40),
    JSON_VALUE.map(lambda value: json.dumps(value).encode()),
    mutated_events(),
    mutated_events(),  # twice as likely: the closest to valid, so the deepest into the projector
    encoded_events(),
    st.integers(9, 40_000).map(lambda depth: b"[" * depth + b"]" * depth),
)
HEADERS = st.none() | st.dictionaries(
    st.sampled_from(["x-published-at", "x-correlation-id", "x-delivery-count", "other"]),
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | SHORT_TEXT,
    max_size=3,
)


def properties(content_types: st.SearchStrategy, content_encodings: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {
            "message_id": SHORT_STRING,
            "type": SHORT_STRING,
            "content_type": content_types,
            "content_encoding": content_encodings,
            "timestamp": st.none() | st.integers(0, 2**64 - 1),
            "headers": HEADERS,
        }
    )


ACCEPTABLE_PROPERTIES = properties(
    st.sampled_from([None, "application/json", "application/json; charset=utf-8", "Application/JSON"]),
    st.sampled_from([None, "utf-8", "identity"]),
)
ANY_PROPERTIES = properties(
    st.none()
    | st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1"])
    | SHORT_TEXT,
    st.none() | st.sampled_from(["gzip", "utf-8", "base64"]) | SHORT_TEXT,
)


@dataclass(frozen=True)
class Message:
    body: bytes
    properties: dict[str, Any]
    routing_key: str = "account.MoneyDeposited"


ROUTING_KEYS = st.sampled_from(sorted(EVENT_TYPES)).map("account.{}".format) | SHORT_TEXT.map(
    "account.{}".format
)
# Hostile bodies with properties that pass the content checks, so the body itself is judged, and hostile
# properties (content type and encoding included) on any body.
HOSTILE_BODY = st.builds(Message, BODIES, ACCEPTABLE_PROPERTIES, ROUTING_KEYS)
HOSTILE_PROPERTIES = st.builds(Message, BODIES, ANY_PROPERTIES, ROUTING_KEYS)

# ------------------------------------------------------------------------------------------- accounting


def _counter(name: str, **labels: str) -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def _pending() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pending_events")
        return cursor.fetchone()[0]


@dataclass(frozen=True)
class Tally:
    applied: float
    duplicates: float
    pending: int
    dead_lettered: float
    dead_letter_queue: int
    records: int

    @classmethod
    def now(cls, broker: Any) -> Tally:
        return cls(
            _counter("cqrs_events_applied_total", path="broker"),
            _counter("cqrs_events_duplicate_total", path="broker"),
            _pending(),
            _counter("cqrs_events_dead_lettered_total"),
            broker.message_count(DEAD_LETTER_QUEUE),
            DeadLetter.objects.count(),
        )

    def accounted_since(self, before: Tally) -> float:
        return (
            self.applied - before.applied
            + self.duplicates - before.duplicates
            + self.pending - before.pending
            + self.dead_lettered - before.dead_lettered
        )  # fmt: skip


def _state(history: AccountHistory) -> tuple[int, Decimal] | None:
    return AccountView.objects.filter(account_id=history.account_id).values_list("version", "balance").first()


# ------------------------------------------------------------------------------------------- the property


@pytest.mark.slow
def test_any_message_is_applied_ignored_or_dead_lettered_and_the_projector_keeps_going(
    broker, start_projector, hostile_publisher
) -> None:
    running = [start_projector()]
    published = {"messages": 0, "valid": 0}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,  # the same examples on every run of the suite: no example store to depend on
        derandomize=True,
        # No shrinking: each try costs a round trip through the broker and the database, and a failing
        # example (at most 60 messages, printed whole) is readable and replays as it is.
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(st.data())
    def example(data: st.DataObject) -> None:
        if not running[-1].alive:
            # An earlier example stopped it: start again from a clean queue, so that each example is
            # judged on its own messages.
            broker.purge_queues()
            running.append(start_projector())
        projector = running[-1]
        accounts = [
            AccountHistory(owner=f"owner-{i}", start=datetime.now(UTC) - timedelta(hours=1)) for i in (0, 1)
        ]
        valid: list[Message] = []
        expected: dict[uuid.UUID, tuple[int, Decimal]] = {}
        for history in accounts:
            events = [history.opened()]
            amounts = data.draw(st.lists(st.integers(1, 10_000), max_size=4), label="deposits")
            events += [history.deposited(f"{cents / 100:.2f}") for cents in amounts]
            expected[history.account_id] = (
                len(events),
                sum(Decimal(c) / 100 for c in amounts) + Decimal("0.00"),
            )
            valid += [Message(to_wire(e), data.draw(ACCEPTABLE_PROPERTIES), e.routing_key) for e in events]
        resent = data.draw(st.lists(st.sampled_from(valid), max_size=2), label="resent")
        hostile = data.draw(st.lists(HOSTILE_BODY, min_size=30, max_size=45), label="hostile bodies")
        hostile += data.draw(st.lists(HOSTILE_PROPERTIES, max_size=10), label="hostile properties")
        messages = data.draw(st.permutations(valid + resent + hostile), label="order")

        before = Tally.now(broker)
        hostile_publisher.publish_batch((m.body, m.routing_key, m.properties) for m in messages)
        published["messages"] += len(messages)
        published["valid"] += len(valid)

        eventually(
            lambda: not projector.alive or Tally.now(broker).accounted_since(before) >= len(messages),
            timeout=30,
        )
        assert projector.alive, "the projector stopped"
        after = Tally.now(broker)
        assert after.accounted_since(before) == len(messages), (before, after)
        assert broker.backlog() == 0
        dead = after.dead_lettered - before.dead_lettered
        eventually(
            lambda: Tally.now(broker).dead_letter_queue - before.dead_letter_queue == dead, timeout=10.0
        )
        assert after.records - before.records == dead
        assert {h.account_id: _state(h) for h in accounts} == expected
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pending_events WHERE aggregate_id = ANY(%s::uuid[])",
                [[str(h.account_id) for h in accounts]],
            )
            assert cursor.fetchone()[0] == 0

    example()
    assert len(running) == 1 and running[0].alive
    assert published["messages"] >= 2_500, published
