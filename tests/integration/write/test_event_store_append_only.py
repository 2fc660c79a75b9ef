"""The event store refuses changes in the database itself: only `published_at` may be set, and only once."""

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


def test_published_at_is_set_once_and_then_frozen(position: int) -> None:
    assert _execute("UPDATE events SET published_at = now() WHERE position = %s", position) == 1
    first = models.Event.objects.get(position=position).published_at
    assert first is not None

    with pytest.raises(DatabaseError, match="only published_at may be set, once"):
        _execute("UPDATE events SET published_at = now() + interval '1 hour' WHERE position = %s", position)
    assert models.Event.objects.get(position=position).published_at == first
