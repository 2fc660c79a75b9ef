"""Hostile and broken messages on cqrs.events, one per way a message can be wrong, against the real broker and
read DB: each is dead-lettered with a record, a metric and a log line, the projector keeps running, and a
valid event published right after it is applied.

A "parked" poison carries a version ahead of the account's next one, so the apply step would keep it in
`pending_events` (jsonb, an integer version): where values PostgreSQL cannot store used to surface.
"""

from __future__ import annotations

import gzip
import json
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from prometheus_client import REGISTRY

from cqrs_common.events import to_wire
from cqrs_common.messaging import DEAD_LETTER_QUEUE, Consumer
from devkit.metrics import sample, scrape
from devkit.polling import eventually
from read_service.projections.models import AccountView, DeadLetter
from read_service.projections.projector import Projector
from tests.integration.read.conftest import AccountHistory, projector_command

NEXT, AHEAD = 2, 3  # the poison's version: the account's next one, or one past it (parked if valid)


@dataclass(frozen=True)
class Poison:
    reason: str
    body: Callable[[dict[str, Any]], bytes]  # from the wire form of a deposit of the right version
    version: int = NEXT
    properties: dict[str, Any] = field(default_factory=dict)


def _with(**changes: Any) -> Callable[[dict[str, Any]], bytes]:
    return lambda wire: json.dumps({**wire, **changes}).encode()


def _with_data(**extra: Any) -> Callable[[dict[str, Any]], bytes]:
    return lambda wire: json.dumps({**wire, "data": {**wire["data"], **extra}}).encode()


def _text(replace: str, by: str) -> Callable[[dict[str, Any]], bytes]:
    """The JSON text with one token replaced: for what `json.dumps` would never write."""
    return lambda wire: json.dumps(wire).replace(replace, by).encode()


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


POISONS: dict[str, Poison] = {
    "type_is_a_list": Poison("unknown_type", lambda wire: b'{"type": []}'),
    "type_is_an_object": Poison("unknown_type", _with(type={"a": 1})),
    "schema_version_is_an_object": Poison("unsupported_schema_version", _with(schema_version={})),
    "schema_version_is_true": Poison("unsupported_schema_version", _with(schema_version=True)),
    "deeply_nested_body": Poison("too_deep", lambda wire: _nested(30_000)),
    "deeply_nested_data": Poison(
        "too_deep",
        lambda wire: json.dumps(wire).replace('"amount"', f'"x": {_nested(100).decode()}, "amount"').encode(),
        AHEAD,
    ),
    "type_property_longer_than_the_record_column": Poison(
        "malformed_json", lambda wire: b"{not json", properties={"type": "T" * 255}
    ),
    "nul_in_data": Poison("invalid_envelope", _with_data(memo="a\u0000b"), AHEAD),
    "nul_in_owner": Poison(
        "invalid_envelope", _with(type="AccountOpened", data={"owner": "a\u0000b", "currency": "EUR"})
    ),
    "nan_in_data": Poison("malformed_json", _text('"MEMO"', "NaN"), AHEAD),
    "infinity_as_amount": Poison("malformed_json", _text('"1.00"', "Infinity"), AHEAD),
    "number_beyond_float": Poison("invalid_envelope", _text('"1.00"', "1e400"), AHEAD),
    "lone_surrogate_in_data": Poison("invalid_envelope", _text('"MEMO"', '"x\\ud800y"'), AHEAD),
    "version_2_pow_31": Poison("invalid_envelope", _with(aggregate_version=2**31), AHEAD),
    "version_negative": Poison("invalid_envelope", _with(aggregate_version=-1), AHEAD),
    "version_zero": Poison("invalid_envelope", _with(aggregate_version=0), AHEAD),
    "version_bool": Poison("invalid_envelope", _with(aggregate_version=True), AHEAD),
    "version_float": Poison("invalid_envelope", _with(aggregate_version=3.0), AHEAD),
    "position_2_pow_63": Poison("invalid_envelope", _with(position=2**63), AHEAD),
    "occurred_at_before_year_1_in_utc": Poison(
        "invalid_envelope", _with(occurred_at="0001-01-01T00:00:00+05:00"), AHEAD
    ),
    "non_utf8_body": Poison(
        "malformed_json",
        lambda wire: json.dumps(wire, ensure_ascii=False).replace("1.00", "1.00é").encode("latin-1"),
    ),
    "utf16_body": Poison("malformed_json", lambda wire: json.dumps(wire).encode("utf-16")),
    "body_over_64_kib": Poison("too_large", _with_data(memo="m" * 70_000), AHEAD),
    "content_type_text_plain": Poison(
        "unsupported_content_type",
        lambda wire: json.dumps(wire).encode(),
        properties={"content_type": "text/plain"},
    ),
    "content_encoding_gzip": Poison(
        "unsupported_content_type",
        lambda wire: gzip.compress(json.dumps(wire).encode()),
        properties={"content_encoding": "gzip"},
    ),
    "message_id_not_utf8": Poison(
        "malformed_json", lambda wire: b"{not json", properties={"message_id": b"\xff\xfe"}
    ),
    "message_id_with_nul": Poison(
        "malformed_json", lambda wire: b"{not json", properties={"message_id": "a\x00b"}
    ),
    "no_message_id_nor_properties": Poison(
        "malformed_json", lambda wire: b"\x00\x01", properties={"message_id": None, "content_type": None}
    ),
}


def _version(history: AccountHistory) -> int:
    return (
        AccountView.objects.filter(account_id=history.account_id).values_list("version", flat=True).first()
        or 0
    )


def _dead_lettered(reason: str) -> float:
    return REGISTRY.get_sample_value("cqrs_events_dead_lettered_total", {"reason": reason}) or 0.0


@pytest.fixture
def opened(broker, publish, start_projector):
    """An account at version 1 and a running projector."""
    alice = AccountHistory()
    publish(alice.opened())
    projector = start_projector()
    eventually(lambda: _version(alice) == 1, timeout=10.0)
    return alice, projector


@pytest.mark.parametrize("name", POISONS)
def test_a_hostile_message_is_dead_lettered_and_the_next_event_applied(
    name, opened, broker, publish, hostile_publisher
) -> None:
    poison = POISONS[name]
    alice, projector = opened
    before = _dead_lettered(poison.reason)
    wire = json.loads(to_wire(alice.deposited("1.00")))
    alice.version -= 1
    wire["aggregate_version"] = poison.version
    wire["data"]["memo"] = "MEMO"
    hostile_publisher.publish(poison.body(wire), **poison.properties)
    publish(alice.deposited("2.00"))

    eventually(lambda: not projector.alive or _version(alice) == 2, timeout=10.0)
    assert projector.alive, "the projector stopped"
    assert AccountView.objects.get(account_id=alice.account_id).balance == Decimal("2.00")
    eventually(
        lambda: broker.backlog() == 0 and broker.message_count(DEAD_LETTER_QUEUE) == 1,
        timeout=10.0,
    )
    record = DeadLetter.objects.get()
    assert (record.reason, _dead_lettered(poison.reason)) == (poison.reason, before + 1), record.detail
    assert record.detail
    if "type" in poison.properties:
        assert record.event_type == poison.properties["type"][:64]


@pytest.mark.parametrize(
    "properties",
    [
        {"message_id": None},
        {"type": "T" * 255},
        {"timestamp": 2**63 - 1},
        {"headers": {"x-published-at": "9999-12-31T23:59:59.999999-23:59", "x-correlation-id": b"\xff"}},
        {"content_type": "application/json; charset=utf-8"},
    ],
    ids=["no_message_id", "long_type", "timestamp_far_future", "odd_headers", "json_with_charset"],
)
def test_a_valid_event_with_odd_properties_is_applied(properties, opened, broker, hostile_publisher) -> None:
    alice, projector = opened
    hostile_publisher.publish(to_wire(alice.deposited("3.00")), **properties)

    eventually(lambda: not projector.alive or _version(alice) == 2, timeout=10.0)
    assert projector.alive, "the projector stopped"
    assert AccountView.objects.get(account_id=alice.account_id).balance == Decimal("3.00")
    eventually(lambda: broker.backlog() == 0, timeout=10.0)
    assert broker.message_count(DEAD_LETTER_QUEUE) == 0 and not DeadLetter.objects.exists()


def _failures(component: str) -> float:
    return REGISTRY.get_sample_value("cqrs_projector_failures_total", {"component": component}) or 0.0


@pytest.fixture
def dead_letters_refuse_boom(transactional_db: None) -> Iterator[None]:
    """The database refuses a record whose detail says "boom": a failure none of the checks foresees."""
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE dead_letters ADD CONSTRAINT test_refuses_boom "
            "CHECK (detail NOT LIKE '%boom%') NOT VALID"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE dead_letters DROP CONSTRAINT test_refuses_boom")


def test_a_batch_that_fails_unforeseen_is_applied_event_by_event(
    broker, publish, hostile_publisher, start_projector, dead_letters_refuse_boom
) -> None:
    alice = AccountHistory()
    failures, refused = _failures("apply"), _dead_lettered("unknown_type")
    publish(alice.opened())
    hostile_publisher.publish(b'{"type": "boom"}')
    publish(alice.deposited("2.00"), alice.deposited("3.00"))
    projector = start_projector()  # all four wait already: one batch

    eventually(lambda: not projector.alive or _version(alice) == 3, timeout=10.0)
    assert projector.alive, "the projector stopped"
    assert AccountView.objects.get(account_id=alice.account_id).balance == Decimal("5.00")
    eventually(
        lambda: broker.backlog() == 0 and broker.message_count(DEAD_LETTER_QUEUE) == 1,
        timeout=10.0,
    )
    assert (_failures("apply"), _dead_lettered("unknown_type")) == (failures + 1, refused + 1)
    assert not DeadLetter.objects.exists()  # the one record the database refused; the message is in the DLQ


def test_an_unforeseen_failure_of_the_loop_is_counted_and_the_loop_starts_over(
    broker, broker_url, publish, transactional_db
) -> None:
    failures, attempts = _failures("consumer"), []

    def connect() -> Consumer:
        attempts.append(len(attempts) + 1)
        if len(attempts) == 1:
            raise RuntimeError("a failure nobody foresaw")
        return Consumer(broker_url, connection_name="test-projector", prefetch=200)

    stop = threading.Event()
    thread = threading.Thread(
        target=Projector(connect, batch_size=100, receive_timeout=0.2).run, args=(stop,), daemon=True
    )
    thread.start()
    try:
        alice = AccountHistory()
        publish(alice.opened())
        eventually(lambda: not thread.is_alive() or _version(alice) == 1, timeout=10.0)
        assert thread.is_alive(), "the projector stopped"
        assert (_failures("consumer"), len(attempts)) == (failures + 1, 2)
    finally:
        stop.set()
        thread.join(timeout=10)


def test_dlq_replay_marks_the_record_of_a_message_whose_id_holds_nul(
    opened, broker, hostile_publisher, capsys
):
    hostile_publisher.publish(b"{not json", message_id="a\x00b")
    eventually(
        lambda: broker.message_count(DEAD_LETTER_QUEUE) == 1 and DeadLetter.objects.count() == 1, timeout=10.0
    )
    assert DeadLetter.objects.get().message_id == "a\\x00b"

    call_command("dlq", "replay")

    assert "replayed 1 message(s)" in capsys.readouterr().out
    assert DeadLetter.objects.filter(replayed_at__isnull=False).count() == 1
    # Still not an event: refused again, with a record of its own.
    eventually(
        lambda: broker.message_count(DEAD_LETTER_QUEUE) == 1 and DeadLetter.objects.count() == 2, timeout=10.0
    )


@pytest.mark.slow
def test_the_projector_process_outlives_every_known_crasher(
    broker, broker_url, publish, hostile_publisher, empty_replica
) -> None:
    """The command as supervisor runs it: on main, each of these made the process exit (and come back to the
    same message after a restart)."""
    with projector_command(broker_url) as (process, port):
        alice = AccountHistory()
        publish(alice.opened())
        eventually(lambda: _version(alice) == 1, timeout=30)
        for poison in POISONS.values():
            wire = json.loads(to_wire(alice.deposited("1.00")))
            alice.version -= 1
            wire["aggregate_version"], wire["data"]["memo"] = poison.version, "MEMO"
            hostile_publisher.publish(poison.body(wire), **poison.properties)
        hostile_publisher.publish(to_wire(alice.deposited("4.00")), timestamp=2**63 - 1)

        eventually(lambda: process.poll() is not None or _version(alice) == 2, timeout=30)
        assert process.poll() is None, f"the projector exited with {process.returncode}"
        eventually(lambda: broker.message_count(DEAD_LETTER_QUEUE) == len(POISONS), timeout=30)
        exposition = eventually(lambda: scrape(f"http://127.0.0.1:{port}/metrics"), timeout=10)
        dead_lettered = sample(exposition, "cqrs_events_dead_lettered_total")
        assert dead_lettered == len(POISONS)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
