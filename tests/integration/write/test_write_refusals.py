"""Every error row of CONTRACT.md for the write API: the status, a problem+json body, and nothing written
(no event, no account change, no idempotency key)."""

from __future__ import annotations

import json
import uuid

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

DEPOSIT = "/api/accounts/{}/deposit"


# --- 400: malformed JSON, missing or invalid fields -------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [b"{", b'{"amount": }', b"not json", b'{"amount": NaN}', b"\xff\xfe", b"[" * 5000]
)
def test_malformed_json_is_400(ledger, api, unchanged, assert_problem, raw: bytes) -> None:
    account_id = ledger.open(balance="1.00")
    check = unchanged()

    response = api.post(DEPOSIT.format(account_id), data=raw, content_type="application/json")

    assert_problem(response, 400, "malformed-json")
    check()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "required"),
        ({"amount": None}, "null"),
        ({"amount": "0"}, "greater than 0"),
        ({"amount": 0}, "greater than 0"),
        ({"amount": "-10.00"}, "greater than 0"),
        ({"amount": "1.001"}, "at most 2 decimal places"),
        ({"amount": "1000000000.01"}, "at most 1000000000.00"),
        ({"amount": "ten"}, "decimal number"),
        ({"amount": True}, "decimal number"),
        ({"amount": [1]}, "decimal number"),
    ],
)
@pytest.mark.parametrize("command", ["deposit", "withdraw"])
def test_an_invalid_amount_is_400_naming_the_field(
    ledger, unchanged, assert_problem, command: str, body: dict, message: str
) -> None:
    account_id = ledger.open(balance="5.00")
    check = unchanged()

    response = ledger.post(f"/api/accounts/{account_id}/{command}", body)

    problem = assert_problem(response, 400, "validation-error")
    assert message in problem["errors"]["amount"][0]
    check()


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("", "1 to 140 characters"),
        ("x" * 141, "1 to 140 characters"),
        (42, "string or null"),
        (["INV-1"], "string or null"),
        ({"id": "INV-1"}, "string or null"),
        (True, "string or null"),
        # Text PostgreSQL cannot store (NUL) or UTF-8 cannot encode (a lone surrogate) is refused, not a 500.
        ("INV\u00001", "NUL characters or lone surrogates"),
        ("INV\ud800", "NUL characters or lone surrogates"),
    ],
)
def test_a_deposit_with_an_invalid_reference_is_400_naming_the_field(
    ledger, unchanged, assert_problem, reference: object, message: str
) -> None:
    account_id = ledger.open(balance="5.00")
    check = unchanged()

    response = ledger.post(DEPOSIT.format(account_id), {"amount": "1.00", "reference": reference})

    problem = assert_problem(response, 400, "validation-error")
    assert list(problem["errors"]) == ["reference"]
    assert message in problem["errors"]["reference"][0]
    check()


def test_a_body_that_is_not_an_object_is_400(ledger, unchanged, assert_problem) -> None:
    account_id = ledger.open()
    check = unchanged()

    response = ledger.post(DEPOSIT.format(account_id), ["amount", "1.00"])

    assert "non_field_errors" in assert_problem(response, 400)["errors"]
    check()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "owner"),
        ({"owner": ""}, "owner"),
        ({"owner": "   "}, "owner"),
        ({"owner": "x" * 101}, "owner"),
        ({"owner": 42}, "owner"),
        # Text PostgreSQL cannot store (NUL) or UTF-8 cannot encode (a lone surrogate) is refused, not a 500.
        ({"owner": "a\u0000b"}, "owner"),
        ({"owner": "x\ud800y"}, "owner"),
        ({"owner": "alice", "currency": "eur"}, "currency"),
        ({"owner": "alice", "currency": "XYZ"}, "currency"),
        ({"owner": "alice", "currency": None}, "currency"),
    ],
)
def test_opening_with_an_invalid_owner_or_currency_is_400(
    ledger, unchanged, assert_problem, body, field
) -> None:
    check = unchanged()

    response = ledger.post("/api/accounts", body)

    assert field in assert_problem(response, 400, "validation-error")["errors"]
    check()


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"from_account", "to_account", "amount"}),
        ({"from_account": "nope", "to_account": str(uuid.uuid4()), "amount": "1"}, {"from_account"}),
        ({"from_account": str(uuid.uuid4()), "to_account": str(uuid.uuid4()), "amount": "-1"}, {"amount"}),
    ],
)
def test_an_invalid_transfer_is_400_naming_every_bad_field(
    ledger, unchanged, assert_problem, body, fields
) -> None:
    ledger.open(balance="5.00")
    check = unchanged()

    response = ledger.post("/api/transfers", body)

    assert assert_problem(response, 400, "validation-error")["errors"].keys() == fields
    check()


@pytest.mark.parametrize(
    ("header", "value"),
    [("HTTP_IF_MATCH", "two"), ("HTTP_IF_MATCH", 'W/"2"'), ("HTTP_IDEMPOTENCY_KEY", "k" * 256)],
)
def test_a_malformed_command_header_is_400_naming_it(
    ledger, unchanged, assert_problem, header, value
) -> None:
    account_id = ledger.open()
    check = unchanged()

    response = ledger.post(DEPOSIT.format(account_id), {"amount": "1"}, **{header: value})

    errors = assert_problem(response, 400, "validation-error")["errors"]
    assert errors.keys() == {"If-Match" if header == "HTTP_IF_MATCH" else "Idempotency-Key"}
    check()


# --- 401: missing or wrong bearer token ------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token", "Basic dXNlcjpwYXNz", "Bearer", "dev-token"]
)
@pytest.mark.parametrize(
    "path", ["/api/accounts", "/api/accounts/{}/deposit", "/api/accounts/{}/close", "/api/transfers"]
)
def test_a_missing_or_wrong_token_is_401_with_www_authenticate(
    ledger, unchanged, assert_problem, authorization: str | None, path: str
) -> None:
    account_id = ledger.open()
    client = APIClient()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    check = unchanged()

    response = client.post(
        path.format(account_id),
        data=json.dumps({"owner": "eve", "amount": "1"}),
        content_type="application/json",
    )

    assert_problem(response, 401)
    assert response["WWW-Authenticate"] == "Bearer"
    check()


# --- 404: unknown account ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["deposit", "withdraw", "close"])
def test_a_command_on_an_unknown_account_is_404(ledger, unchanged, assert_problem, command: str) -> None:
    ledger.open(balance="5.00")
    unknown = uuid.uuid4()
    check = unchanged()

    response = ledger.post(f"/api/accounts/{unknown}/{command}", {"amount": "1.00"})

    assert str(unknown) in assert_problem(response, 404, "account-not-found")["detail"]
    check()


@pytest.mark.parametrize("unknown_side", ["from_account", "to_account"])
def test_a_transfer_with_an_unknown_account_is_404(
    ledger, unchanged, assert_problem, unknown_side: str
) -> None:
    body = {"from_account": str(ledger.open(balance="5.00")), "to_account": str(ledger.open()), "amount": "1"}
    body[unknown_side] = str(uuid.uuid4())
    check = unchanged()

    response = ledger.post("/api/transfers", body)

    assert body[unknown_side] in assert_problem(response, 404, "account-not-found")["detail"]
    check()


def test_an_account_id_that_is_not_a_uuid_is_404(ledger, unchanged, assert_problem) -> None:
    check = unchanged()
    assert_problem(ledger.post("/api/accounts/42/deposit", {"amount": "1"}), 404)
    check()


# --- 413, 415: the body itself -------------------------------------------------------------------------


def test_a_body_over_64_kib_is_413(ledger, api, unchanged, assert_problem) -> None:
    account_id = ledger.open()
    check = unchanged()
    body = json.dumps({"amount": "1.00", "padding": "x" * (64 * 1024)})

    response = api.post(DEPOSIT.format(account_id), data=body, content_type="application/json")

    assert_problem(response, 413, "payload-too-large")
    check()


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("text/plain", b'{"amount": "1.00"}'),
        ("application/x-www-form-urlencoded", b"amount=1.00"),
        ("application/xml", b"<amount>1.00</amount>"),
        (None, b'{"amount": "1.00"}'),
    ],
)
def test_a_body_that_is_not_json_is_415(ledger, api, unchanged, assert_problem, content_type, data) -> None:
    account_id = ledger.open()
    check = unchanged()

    if content_type is None:  # a body with no Content-Type at all
        response = api.generic("POST", DEPOSIT.format(account_id), data, content_type="")
    else:
        response = api.post(DEPOSIT.format(account_id), data=data, content_type=content_type)

    assert_problem(response, 415, "unsupported-media-type")
    check()


def test_json_with_a_charset_is_json(ledger, api) -> None:
    account_id = ledger.open()
    response = api.post(
        DEPOSIT.format(account_id), data=b'{"amount": "1.00"}', content_type="application/json; charset=utf-8"
    )
    assert response.status_code == 200


# --- 409: business rules -------------------------------------------------------------------------------


def test_withdrawing_more_than_the_balance_is_409(ledger, unchanged, assert_problem) -> None:
    account_id = ledger.open(balance="10.00")
    check = unchanged()

    response = ledger.post(f"/api/accounts/{account_id}/withdraw", {"amount": "10.01"})

    assert_problem(response, 409, "insufficient-funds")
    check()


@pytest.mark.parametrize("command", ["deposit", "withdraw", "close"])
def test_a_command_on_a_closed_account_is_409(ledger, unchanged, assert_problem, command: str) -> None:
    account_id = ledger.open()
    ledger.close(account_id)
    check = unchanged()

    response = ledger.post(f"/api/accounts/{account_id}/{command}", {"amount": "1.00"})

    assert_problem(response, 409, "account-closed")
    check()


def test_closing_a_non_zero_balance_is_409(ledger, unchanged, assert_problem) -> None:
    account_id = ledger.open(balance="0.01")
    check = unchanged()

    assert_problem(ledger.post(f"/api/accounts/{account_id}/close", {}), 409, "non-zero-balance")
    check()


def _transfer(source, target, amount: str = "1.00") -> dict:
    return {"from_account": str(source), "to_account": str(target), "amount": amount}


def test_a_transfer_to_itself_is_409(ledger, unchanged, assert_problem) -> None:
    account_id = ledger.open(balance="5.00")
    check = unchanged()

    assert_problem(
        ledger.post("/api/transfers", _transfer(account_id, account_id)), 409, "transfer-to-itself"
    )
    check()


def test_a_transfer_across_currencies_is_409(ledger, unchanged, assert_problem) -> None:
    source, target = ledger.open(balance="5.00"), ledger.open(currency="USD")
    check = unchanged()

    assert_problem(ledger.post("/api/transfers", _transfer(source, target)), 409, "currency-mismatch")
    check()


def test_a_transfer_beyond_the_balance_is_409(ledger, unchanged, assert_problem) -> None:
    source, target = ledger.open(balance="5.00"), ledger.open()
    check = unchanged()

    assert_problem(
        ledger.post("/api/transfers", _transfer(source, target, "5.01")), 409, "insufficient-funds"
    )
    check()


@pytest.mark.parametrize("closed_side", ["source", "target"])
def test_a_transfer_touching_a_closed_account_is_409(ledger, unchanged, assert_problem, closed_side) -> None:
    source, target = ledger.open(balance="5.00"), ledger.open()
    closed = ledger.open()
    ledger.close(closed)
    body = _transfer(closed, target) if closed_side == "source" else _transfer(source, closed)
    check = unchanged()

    assert_problem(ledger.post("/api/transfers", body), 409, "account-closed")
    check()


# --- 412: stale If-Match ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["deposit", "withdraw", "close"])
def test_a_stale_if_match_is_412_with_the_current_etag(
    ledger, unchanged, assert_problem, command: str
) -> None:
    account_id = ledger.open(balance="5.00")  # now at version 2
    check = unchanged()

    response = ledger.post(f"/api/accounts/{account_id}/{command}", {"amount": "1.00"}, HTTP_IF_MATCH='"1"')

    assert_problem(response, 412, "version-mismatch")
    assert response["ETag"] == '"2"'
    check()


def test_a_transfer_checks_if_match_against_the_source(ledger, unchanged, assert_problem) -> None:
    source, target = ledger.open(balance="5.00"), ledger.open()  # versions 2 and 1
    check = unchanged()

    response = ledger.post("/api/transfers", _transfer(source, target), HTTP_IF_MATCH='"1"')

    assert_problem(response, 412, "version-mismatch")
    check()
    assert ledger.post("/api/transfers", _transfer(source, target), HTTP_IF_MATCH='"2"').status_code == 201


# --- 405: a method the endpoint does not take -------------------------------------------------------------


def test_an_unsupported_method_is_405_with_allow(api, unchanged, assert_problem) -> None:
    check = unchanged()
    response = api.get("/api/accounts")
    assert_problem(response, 405)
    assert "POST" in response["Allow"]
    check()


def test_a_host_outside_allowed_hosts_is_400_problem(ledger, unchanged, assert_problem) -> None:
    check = unchanged()
    assert_problem(ledger.post("/api/accounts", {"owner": "eve"}, HTTP_HOST="evil.example"), 400)
    check()
