"""Deposits of two schema versions on the write side (CONTRACT.md, "Versioning"): rows the previous release
stored as version 1 stay as they are, new ones are version 2, the write side's own reader folds both, and the
OpenAPI document describes the reference."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.conf import settings

from devkit.previous_release import deposit_v1
from write_service.ledger import models, services
from write_service.ledger.domain import Account, MoneyDeposited


def _database_url() -> str:
    database = settings.DATABASES["default"]
    return (
        f"postgres://{database['USER']}:{database['PASSWORD']}@{database['HOST']}:{database['PORT'] or 5432}"
        f"/{database['NAME']}"
    )


@pytest.mark.django_db(transaction=True)
def test_a_history_of_both_versions_folds_to_the_stored_state(ledger, stored_events) -> None:
    account_id = ledger.open(balance="1.00")
    old = deposit_v1(_database_url(), account_id, "2.50")
    response = ledger.post(f"/api/accounts/{account_id}/deposit", {"amount": "4.00", "reference": "INV-9"})
    assert response.status_code == 200, response.content
    assert response.json()["version"] == old.version + 1 == 4

    rows = stored_events(account_id)
    assert [(e.event_type, e.schema_version, e.data) for e in rows] == [
        ("AccountOpened", 1, {"owner": "alice", "currency": "EUR"}),
        ("MoneyDeposited", 2, {"amount": "1.00", "reference": None}),
        ("MoneyDeposited", 1, {"amount": "2.50"}),  # as the previous release stored it, and stays
        ("MoneyDeposited", 2, {"amount": "4.00", "reference": "INV-9"}),
    ]
    history = services.account_history(account_id)
    assert history[2:] == [
        MoneyDeposited(amount=Decimal("2.50"), reference=None),
        MoneyDeposited(amount=Decimal("4.00"), reference="INV-9"),
    ]
    row = models.Account.objects.get(pk=account_id)
    assert Account.from_events(account_id, history) == services.to_domain(row)
    assert row.balance == Decimal("7.50") == old.balance + Decimal("4.00")


@pytest.mark.django_db(transaction=True)
def test_the_previous_release_refuses_what_it_refused() -> None:
    with pytest.raises(LookupError):
        deposit_v1(_database_url(), uuid.uuid4(), "1.00")
    with pytest.raises(ValueError):
        deposit_v1(_database_url(), uuid.uuid4(), "1.001")


@pytest.mark.django_db
def test_the_schema_documents_the_deposit_reference(client) -> None:
    schema = client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    body = schema["paths"]["/api/accounts/{account_id}/deposit"]["post"]["requestBody"]
    reference_of = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    deposit = schema["components"]["schemas"][reference_of]
    assert deposit["required"] == ["amount"]
    reference = deposit["properties"]["reference"]
    assert (reference["type"], reference["nullable"], reference["minLength"], reference["maxLength"]) == (
        "string",
        True,
        1,
        140,
    )
