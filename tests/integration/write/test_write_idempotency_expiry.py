"""Idempotency keys expire IDEMPOTENCY_KEY_TTL_SECONDS after their first request: an expired key is a new
request, and `purge_idempotency_keys` deletes expired keys through an index on their age."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection

from write_service.ledger import models
from write_service.ledger.api import idempotency

pytestmark = pytest.mark.django_db


def _deposit(ledger, account_id, amount: str, key: str):
    return ledger.post(f"/api/accounts/{account_id}/deposit", {"amount": amount}, HTTP_IDEMPOTENCY_KEY=key)


def _age(key: str, seconds: float) -> None:
    """Makes the key look `seconds` older than it is."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE idempotency_keys SET created_at = created_at - make_interval(secs => %s) WHERE key = %s",
            [seconds, key],
        )


def test_the_default_ttl_is_a_day(settings) -> None:
    assert settings.IDEMPOTENCY_KEY_TTL_SECONDS == 24 * 3600


def test_a_key_younger_than_the_ttl_replays(ledger, settings, unchanged) -> None:
    settings.IDEMPOTENCY_KEY_TTL_SECONDS = 60
    account_id = ledger.open()
    first = _deposit(ledger, account_id, "10.00", "ttl-young")
    _age("ttl-young", 50)
    check = unchanged()

    retry = _deposit(ledger, account_id, "10.00", "ttl-young")

    assert retry["Idempotent-Replayed"] == "true" and retry.content == first.content
    check()


def test_an_expired_key_is_a_new_request(ledger, settings, stored_events) -> None:
    settings.IDEMPOTENCY_KEY_TTL_SECONDS = 60
    account_id = ledger.open()
    first = _deposit(ledger, account_id, "10.00", "ttl-old")
    _age("ttl-old", 61)

    again = _deposit(ledger, account_id, "10.00", "ttl-old")

    assert again.status_code == 200 and not again.has_header("Idempotent-Replayed")
    assert (first.json()["version"], again.json()["version"]) == (2, 3)
    assert [e.event_type for e in stored_events(account_id)].count("MoneyDeposited") == 2
    # The key now holds the new answer, and replays it.
    retry = _deposit(ledger, account_id, "10.00", "ttl-old")
    assert retry["Idempotent-Replayed"] == "true" and retry.content == again.content
    assert models.IdempotencyKey.objects.filter(key="ttl-old").count() == 1


def test_an_expired_key_may_carry_another_request(ledger, settings) -> None:
    settings.IDEMPOTENCY_KEY_TTL_SECONDS = 60
    account_id = ledger.open()
    _deposit(ledger, account_id, "10.00", "ttl-reused")
    _age("ttl-reused", 61)

    other = _deposit(ledger, account_id, "25.00", "ttl-reused")

    assert other.status_code == 200 and other.json()["balance"] == "35.00"


def test_the_purge_deletes_expired_keys_only(ledger, settings) -> None:
    settings.IDEMPOTENCY_KEY_TTL_SECONDS = 60
    account_id = ledger.open()
    expired = [f"purge-old-{n}" for n in range(5)]
    for key in [*expired, "purge-young"]:
        _deposit(ledger, account_id, "1.00", key)
    for key in expired:
        _age(key, 61)
    _age("purge-young", 50)
    out = io.StringIO()

    call_command("purge_idempotency_keys", "--batch-size", "2", stdout=out)

    remaining = set(
        models.IdempotencyKey.objects.filter(key__startswith="purge-").values_list("key", flat=True)
    )
    assert set(remaining) == {"purge-young"}
    # Keys that committed tests left behind and that have expired go too: at least the five made here.
    deleted = int(out.getvalue().split()[0])
    assert deleted >= 5, out.getvalue()


def test_the_purge_finds_expired_keys_through_an_index() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + idempotency.PURGE_BATCH_SQL, [86400, 1000])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "idempotency_keys_age_idx" in plan, plan
