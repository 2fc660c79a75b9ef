"""Idempotency-Key: a retry returns the first response byte for byte and writes nothing; a reuse with another
request is 422; refusals of the command itself are remembered too; each bearer token has keys of its own."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection

from write_service.ledger import models

pytestmark = pytest.mark.django_db


def _deposit(ledger, account_id, amount: str, key: str, **headers: str):
    return ledger.post(
        f"/api/accounts/{account_id}/deposit", {"amount": amount}, HTTP_IDEMPOTENCY_KEY=key, **headers
    )


def test_a_retry_returns_the_first_response_byte_for_byte_and_writes_nothing(
    ledger, unchanged, stored_events
) -> None:
    account_id = ledger.open()
    first = _deposit(ledger, account_id, "10.00", "key-1", HTTP_X_CORRELATION_ID="first")
    assert first.status_code == 200
    check = unchanged()

    retry = _deposit(ledger, account_id, "10.00", "key-1", HTTP_X_CORRELATION_ID="retry")

    assert retry.status_code == 200
    assert retry.content == first.content
    assert retry["Content-Type"] == first["Content-Type"]
    assert retry["ETag"] == first["ETag"] == '"2"'
    assert retry["X-Consistency-Token"] == first["X-Consistency-Token"]
    assert retry["Idempotent-Replayed"] == "true"
    assert retry["X-Correlation-ID"] == "retry"  # the retry's own, for its own logs
    check()
    assert [e.event_type for e in stored_events(account_id)] == ["AccountOpened", "MoneyDeposited"]


def test_the_same_request_in_another_json_spelling_is_a_retry(ledger, api, unchanged) -> None:
    account_id = ledger.open()
    first = _deposit(ledger, account_id, "10.00", "key-2")
    check = unchanged()

    retry = api.post(
        f"/api/accounts/{account_id}/deposit",
        data=b'{ "amount" : 10.00 }',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="key-2",
    )

    assert retry.content == first.content
    check()


def test_an_open_retried_does_not_open_a_second_account(ledger) -> None:
    accounts_before = models.Account.objects.count()
    first = ledger.post("/api/accounts", {"owner": "alice"}, HTTP_IDEMPOTENCY_KEY="open-1")
    retry = ledger.post("/api/accounts", {"owner": "alice"}, HTTP_IDEMPOTENCY_KEY="open-1")

    assert first.status_code == retry.status_code == 201
    assert retry.content == first.content
    assert models.Account.objects.count() == accounts_before + 1


@pytest.mark.parametrize(
    "other",
    [
        lambda ledger, account_id: _deposit(ledger, account_id, "11.00", "key-3"),
        lambda ledger, account_id: ledger.post(
            f"/api/accounts/{account_id}/withdraw", {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="key-3"
        ),
    ],
    ids=["other_body", "other_path"],
)
def test_the_same_key_with_another_request_is_422(ledger, unchanged, assert_problem, other) -> None:
    account_id = ledger.open()
    _deposit(ledger, account_id, "10.00", "key-3")
    check = unchanged()

    assert_problem(other(ledger, account_id), 422, "idempotency-key-reused")
    check()


def test_a_refused_command_is_remembered_with_its_key_and_writes_nothing(
    ledger, unchanged, assert_problem
) -> None:
    account_id = ledger.open(balance="1.00")
    check = unchanged()

    first = ledger.post(
        f"/api/accounts/{account_id}/withdraw", {"amount": "5.00"}, HTTP_IDEMPOTENCY_KEY="k-409"
    )

    assert_problem(first, 409, "insufficient-funds")
    # Only the key row is new: the savepoint took back everything the command did.
    check(new_keys={"k-409"})
    assert models.IdempotencyKey.objects.get(key="k-409").status_code == 409

    ledger.deposit(account_id, "10.00")  # the retry would now succeed, but the key answers as the first time
    retry = ledger.post(
        f"/api/accounts/{account_id}/withdraw", {"amount": "5.00"}, HTTP_IDEMPOTENCY_KEY="k-409"
    )

    assert retry.status_code == 409
    assert retry.content == first.content
    assert retry["Content-Type"] == "application/problem+json"


def test_a_request_refused_before_the_command_leaves_the_key_unused(ledger) -> None:
    account_id = ledger.open()

    refused = _deposit(ledger, account_id, "-1", "k-400")
    accepted = _deposit(ledger, account_id, "1.00", "k-400")

    assert refused.status_code == 400
    assert accepted.status_code == 200


def test_the_same_key_with_another_if_match_is_422(ledger, unchanged, assert_problem) -> None:
    """If-Match is part of the request: a precondition on version 1 is not a retry of one on version 2."""
    account_id = ledger.open()
    first = _deposit(ledger, account_id, "10.00", "k-if-match", HTTP_IF_MATCH='"1"')
    assert first.status_code == 200
    check = unchanged()

    assert_problem(_deposit(ledger, account_id, "10.00", "k-if-match", HTTP_IF_MATCH='"2"'), 422)
    assert_problem(_deposit(ledger, account_id, "10.00", "k-if-match"), 422, "idempotency-key-reused")
    check()


def test_the_same_if_match_in_another_spelling_is_a_retry(ledger, unchanged) -> None:
    account_id = ledger.open()
    first = _deposit(ledger, account_id, "10.00", "k-if-match-spelling", HTTP_IF_MATCH='"1"')
    check = unchanged()

    retry = _deposit(ledger, account_id, "10.00", "k-if-match-spelling", HTTP_IF_MATCH="1")

    assert retry.content == first.content
    assert retry["Idempotent-Replayed"] == "true"
    check()


@pytest.fixture
def two_clients(settings, make_ledger):
    """Ledgers of two API clients, each with a token of its own."""
    settings.API_TOKENS = frozenset({"token-of-a", "token-of-b"})
    return make_ledger("token-of-a"), make_ledger("token-of-b")


def test_one_key_sent_with_two_tokens_is_two_keys(two_clients, stored_events) -> None:
    a, b = two_clients
    account_id = a.open()

    by_a = _deposit(a, account_id, "10.00", "shared-key")
    by_b = _deposit(b, account_id, "10.00", "shared-key")

    assert by_a.status_code == by_b.status_code == 200
    assert by_b.has_header("Idempotent-Replayed") is False
    assert by_b.json()["version"] == 3 and by_b.json()["balance"] == "20.00"
    deposits = [e for e in stored_events(account_id) if e.event_type == "MoneyDeposited"]
    assert len(deposits) == 2
    # Each token's retry replays its own first answer.
    assert _deposit(a, account_id, "10.00", "shared-key").content == by_a.content
    assert _deposit(b, account_id, "10.00", "shared-key").content == by_b.content


def test_another_token_may_use_a_key_with_another_request(two_clients, assert_problem) -> None:
    a, b = two_clients
    account_id = a.open()
    _deposit(a, account_id, "10.00", "shared-key-2")

    assert _deposit(b, account_id, "99.00", "shared-key-2").status_code == 200
    assert_problem(_deposit(a, account_id, "99.00", "shared-key-2"), 422, "idempotency-key-reused")


def test_a_key_is_stored_with_a_hash_of_its_token_never_the_token(two_clients) -> None:
    a, b = two_clients
    account_id = a.open()
    _deposit(a, account_id, "10.00", "stored-key")
    _deposit(b, account_id, "10.00", "stored-key")

    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(k)::text FROM idempotency_keys k WHERE key = 'stored-key'")
        rows = [row[0] for row in cursor.fetchall()]
    assert len(rows) == 2
    assert not [row for row in rows if "token-of-a" in row or "token-of-b" in row]
    clients = set(models.IdempotencyKey.objects.filter(key="stored-key").values_list("client", flat=True))
    assert clients == {hashlib.sha256(t.encode()).hexdigest() for t in ("token-of-a", "token-of-b")}
