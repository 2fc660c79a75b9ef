"""The event store refuses changes in the database itself: every UPDATE and every DELETE, whatever rows it
would touch. Inserting is all `events` allows; the relay keeps its progress beside it."""

from __future__ import annotations

import uuid

import pytest
from django.db import DatabaseError, connection, transaction

from write_service.ledger import models

pytestmark = pytest.mark.django_db


@pytest.fixture
def position(ledger) -> int:
    ledger.open(owner="immutable")
    return models.Event.objects.order_by("-position").values_list("position", flat=True).first()


def _execute(sql: str, *params: object) -> int:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("data", '{"owner": "mallory", "currency": "EUR"}'),
        ("aggregate_version", 9),
        ("event_type", "AccountClosed"),
        ("aggregate_id", str(uuid.uuid4())),
        ("correlation_id", "rewritten"),
        ("occurred_at", "2001-01-01T00:00:00Z"),
    ],
)
def test_changing_a_stored_event_is_refused(position: int, column: str, value: object) -> None:
    before = models.Event.objects.values().get(position=position)
    with pytest.raises(DatabaseError, match="append-only"):
        _execute(f"UPDATE events SET {column} = %s WHERE position = %s", value, position)
    assert models.Event.objects.values().get(position=position) == before


def test_deleting_an_event_is_refused(position: int) -> None:
    with pytest.raises(DatabaseError, match="DELETE refused"):
        _execute("DELETE FROM events WHERE position = %s", position)
    assert models.Event.objects.filter(position=position).exists()


def test_updating_any_event_is_refused_even_when_nothing_would_change(position: int) -> None:
    before = list(models.Event.objects.values().order_by("position"))
    with pytest.raises(DatabaseError, match="UPDATE refused"):
        _execute("UPDATE events SET position = position WHERE position = %s", position)
    with pytest.raises(DatabaseError, match="UPDATE refused"):
        _execute("UPDATE events SET data = data WHERE false")
    with pytest.raises(DatabaseError, match="DELETE refused"):
        _execute("DELETE FROM events WHERE false")
    assert list(models.Event.objects.values().order_by("position")) == before


def test_the_events_have_no_column_for_the_relay_to_write() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'events' AND column_name"
            " NOT IN ('position', 'event_id', 'aggregate_type', 'aggregate_id', 'aggregate_version',"
            " 'event_type', 'schema_version', 'data', 'occurred_at', 'correlation_id', 'causation_id')"
        )
        assert cursor.fetchall() == []
