"""Every write endpoint's success answer (CONTRACT.md, "Write API"): status, body, headers, stored state and
the events appended to `events` in the same transaction."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from write_service.ledger import models, services
from write_service.ledger.domain import Account

pytestmark = pytest.mark.django_db


def _assert_versioned(response, account_id: uuid.UUID, version: int) -> None:
    assert response["ETag"] == f'"{version}"'
    assert response["X-Consistency-Token"] == f"{account_id}:{version}"


def test_open_answers_201_with_the_new_account_at_version_1(ledger, stored_events) -> None:
    response = ledger.post(
        "/api/accounts", {"owner": "alice", "currency": "USD"}, HTTP_X_CORRELATION_ID="req-1"
    )

    assert response.status_code == 201
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body.keys() == {"account_id", "version"} and body["version"] == 1
    account_id = uuid.UUID(body["account_id"])
    _assert_versioned(response, account_id, 1)
    assert response["X-Correlation-ID"] == "req-1"

    row = models.Account.objects.get(pk=account_id)
    assert (row.owner, row.currency, row.balance, row.status, row.version) == ("alice", "USD", 0, "open", 1)
    [event] = stored_events(account_id)
    assert (event.event_type, event.aggregate_version, event.data) == (
        "AccountOpened",
        1,
        {"owner": "alice", "currency": "USD"},
    )
    assert (event.aggregate_type, event.schema_version, event.correlation_id) == ("account", 1, "req-1")
    assert event.causation_id is None
    assert event.occurred_at == row.opened_at == row.updated_at


def test_open_defaults_to_euro_and_generates_a_correlation_id(ledger, stored_events) -> None:
    response = ledger.post("/api/accounts", {"owner": "bob"})

    assert response.status_code == 201
    account_id = uuid.UUID(response.json()["account_id"])
    assert models.Account.objects.get(pk=account_id).currency == "EUR"
    generated = response["X-Correlation-ID"]
    assert uuid.UUID(generated)
    assert stored_events(account_id)[0].correlation_id == generated


def test_deposit_answers_the_new_balance_and_appends_money_deposited(ledger, stored_events) -> None:
    account_id = ledger.open()

    response = ledger.post(
        f"/api/accounts/{account_id}/deposit", {"amount": "12.5"}, HTTP_X_CORRELATION_ID="dep"
    )

    assert response.status_code == 200
    assert response.json() == {"account_id": str(account_id), "version": 2, "balance": "12.50"}
    _assert_versioned(response, account_id, 2)
    event = stored_events(account_id)[-1]
    assert (event.event_type, event.aggregate_version, event.data, event.correlation_id) == (
        "MoneyDeposited",
        2,
        {"amount": "12.50", "reference": None},
        "dep",
    )
    assert event.schema_version == 2  # the type's current version: it carries a reference, null here
    assert models.Account.objects.get(pk=account_id).balance == Decimal("12.50")


@pytest.mark.parametrize("reference", ["INV-2026-0042", " as given ", "x" * 140, "Überweisung 𝄞", None])
def test_a_deposit_stores_its_reference_as_given(ledger, stored_events, reference: str | None) -> None:
    account_id = ledger.open()

    response = ledger.post(f"/api/accounts/{account_id}/deposit", {"amount": "3.00", "reference": reference})

    assert response.status_code == 200, response.content
    event = stored_events(account_id)[-1]
    assert (event.event_type, event.schema_version, event.data) == (
        "MoneyDeposited",
        2,
        {"amount": "3.00", "reference": reference},
    )


def test_events_are_stored_at_their_types_current_schema_version(ledger, stored_events) -> None:
    source, target = ledger.open(balance="10.00"), ledger.open("bob")
    ledger.post(f"/api/accounts/{source}/withdraw", {"amount": "1.00"})
    ledger.post("/api/transfers", {"from_account": str(source), "to_account": str(target), "amount": "9.00"})
    ledger.post(f"/api/accounts/{source}/close", {})

    versions = {(e.event_type, e.schema_version) for e in stored_events(source) + stored_events(target)}
    assert versions == {
        ("AccountOpened", 1),
        ("MoneyDeposited", 2),
        ("MoneyWithdrawn", 1),
        ("TransferDebited", 1),
        ("TransferCredited", 1),
        ("AccountClosed", 1),
    }


def test_a_json_number_is_read_as_an_exact_decimal(ledger, api) -> None:
    account_id = ledger.open()
    # 0.1 + 0.2 in binary floating point would not be 0.30.
    for amount in (b"0.1", b"0.2"):
        response = api.post(
            f"/api/accounts/{account_id}/deposit",
            data=b'{"amount": ' + amount + b"}",
            content_type="application/json",
        )
        assert response.status_code == 200
    assert response.json()["balance"] == "0.30"


def test_withdraw_answers_the_new_balance_and_appends_money_withdrawn(ledger, stored_events) -> None:
    account_id = ledger.open(balance="10.00")

    response = ledger.post(f"/api/accounts/{account_id}/withdraw", {"amount": 2.25})

    assert response.status_code == 200
    assert response.json() == {"account_id": str(account_id), "version": 3, "balance": "7.75"}
    _assert_versioned(response, account_id, 3)
    event = stored_events(account_id)[-1]
    assert (event.event_type, event.aggregate_version, event.data) == (
        "MoneyWithdrawn",
        3,
        {"amount": "2.25"},
    )


def test_close_answers_the_version_and_appends_account_closed(ledger, stored_events) -> None:
    account_id = ledger.open()

    response = ledger.post(f"/api/accounts/{account_id}/close", {})

    assert response.status_code == 200
    assert response.json() == {"account_id": str(account_id), "version": 2}
    _assert_versioned(response, account_id, 2)
    event = stored_events(account_id)[-1]
    assert (event.event_type, event.aggregate_version, event.data) == ("AccountClosed", 2, {})
    assert models.Account.objects.get(pk=account_id).status == "closed"


def test_close_accepts_an_empty_body(ledger, api) -> None:
    account_id = ledger.open()
    response = api.post(f"/api/accounts/{account_id}/close")
    assert response.status_code == 200


def test_transfer_answers_201_and_appends_one_event_on_each_account(ledger, stored_events) -> None:
    source, target = ledger.open(balance="50.00"), ledger.open(owner="bob")

    response = ledger.post(
        "/api/transfers",
        {"from_account": str(source), "to_account": str(target), "amount": "20.00"},
        HTTP_X_CORRELATION_ID="tr-1",
    )

    assert response.status_code == 201
    body = response.json()
    transfer_id = str(uuid.UUID(body["transfer_id"]))
    assert body == {
        "transfer_id": transfer_id,
        "from_account": {"account_id": str(source), "version": 3},
        "to_account": {"account_id": str(target), "version": 2},
    }
    _assert_versioned(response, source, 3)  # the source's, as the contract says

    debit, credit = stored_events(source)[-1], stored_events(target)[-1]
    assert (debit.event_type, debit.aggregate_version, debit.data) == (
        "TransferDebited",
        3,
        {"transfer_id": transfer_id, "to_account": str(target), "amount": "20.00"},
    )
    assert (credit.event_type, credit.aggregate_version, credit.data) == (
        "TransferCredited",
        2,
        {"transfer_id": transfer_id, "from_account": str(source), "amount": "20.00"},
    )
    assert debit.correlation_id == credit.correlation_id == "tr-1"
    assert debit.causation_id == credit.causation_id == transfer_id
    assert debit.position < credit.position
    balances = dict(models.Account.objects.filter(pk__in=[source, target]).values_list("id", "balance"))
    assert balances == {source: Decimal("30.00"), target: Decimal("20.00")}


def test_matching_if_match_lets_the_command_through(ledger) -> None:
    account_id = ledger.open(balance="1.00")

    response = ledger.post(f"/api/accounts/{account_id}/deposit", {"amount": "1"}, HTTP_IF_MATCH='"2"')
    assert response.status_code == 200
    response = ledger.post(f"/api/accounts/{account_id}/withdraw", {"amount": "1"}, HTTP_IF_MATCH="*")
    assert response.status_code == 200


def test_the_stored_state_is_the_fold_of_the_stored_events(ledger, stored_events) -> None:
    source, target = ledger.open(balance="100.00"), ledger.open()
    ledger.post(f"/api/accounts/{source}/withdraw", {"amount": "0.01"})
    ledger.post("/api/transfers", {"from_account": str(source), "to_account": str(target), "amount": "99.99"})
    ledger.close(source)

    for account_id in (source, target):
        row = models.Account.objects.get(pk=account_id)
        folded = Account.from_events(account_id, services.account_history(account_id))
        assert folded == services.to_domain(row)
        assert [e.aggregate_version for e in stored_events(account_id)] == list(range(1, row.version + 1))


def test_the_schema_documents_every_command(client) -> None:
    from drf_spectacular.validation import validate_schema

    response = client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)  # raises on an invalid OpenAPI 3 document
    assert schema["openapi"].startswith("3.")
    operations = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert operations >= {
        ("/api/accounts", "post"),
        ("/api/accounts/{account_id}/deposit", "post"),
        ("/api/accounts/{account_id}/withdraw", "post"),
        ("/api/accounts/{account_id}/close", "post"),
        ("/api/transfers", "post"),
    }
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    deposit = schema["paths"]["/api/accounts/{account_id}/deposit"]["post"]
    assert {"200", "400", "401", "404", "409", "412", "413", "415", "422"} <= deposit["responses"].keys()
    assert {p["name"] for p in deposit["parameters"]} >= {"Idempotency-Key", "If-Match", "X-Correlation-ID"}
