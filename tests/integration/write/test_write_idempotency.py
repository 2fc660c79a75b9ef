"""Idempotency-Key: a retry returns the first response byte for byte and writes nothing; a reuse with another
request is 422; refusals of the command itself are remembered too."""

from __future__ import annotations

import pytest

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
    assert models.IdempotencyKey.objects.get(pk="k-409").status_code == 409

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
