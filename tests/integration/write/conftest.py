"""Fixtures of the write side's integration tests: the write DB migrated once, an authenticated API client,
a small ledger driver and the checks every refused request must pass (problem+json, nothing written).

Runs with `--ds=write_service.settings` against the database in WRITE_DATABASE_URL (created by infra.sh; no
test-database creation).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from rest_framework.test import APIClient

from write_service.ledger import models

PROBLEM_FIELDS = {"type", "title", "status", "detail"}


@pytest.fixture(scope="session")
def django_db_setup(django_db_blocker: Any) -> None:
    """The database exists already (deploy/local/infra.sh); bring its schema up to date."""
    with django_db_blocker.unblock():
        call_command("migrate", verbosity=0, interactive=False)


@pytest.fixture
def token() -> str:
    return sorted(settings.API_TOKENS)[0]


def authenticated_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def api(token: str) -> APIClient:
    """A DRF test client sending the configured bearer token; pair with `db` or `transactional_db`."""
    return authenticated_client(token)


@pytest.fixture
def make_client(token: str) -> Callable[[], APIClient]:
    """Authenticated clients on demand, e.g. one per thread."""
    return lambda: authenticated_client(token)


class Ledger:
    """Drives the API for a test's arrangement steps, failing loudly if a step does not succeed."""

    def __init__(self, client: APIClient) -> None:
        self.client = client

    def post(self, path: str, body: Any = None, **headers: str) -> Any:
        return self.client.post(path, data=json.dumps(body or {}), content_type="application/json", **headers)

    def open(self, owner: str = "alice", currency: str = "EUR", balance: str | None = None) -> uuid.UUID:
        response = self.post("/api/accounts", {"owner": owner, "currency": currency})
        assert response.status_code == 201, response.content
        account_id = uuid.UUID(response.json()["account_id"])
        if balance is not None:
            self.deposit(account_id, balance)
        return account_id

    def deposit(self, account_id: uuid.UUID, amount: str) -> dict:
        response = self.post(f"/api/accounts/{account_id}/deposit", {"amount": amount})
        assert response.status_code == 200, response.content
        return response.json()

    def close(self, account_id: uuid.UUID) -> dict:
        response = self.post(f"/api/accounts/{account_id}/close")
        assert response.status_code == 200, response.content
        return response.json()


@pytest.fixture
def ledger(api: APIClient) -> Ledger:
    return Ledger(api)


@pytest.fixture
def make_ledger() -> Callable[[str], Ledger]:
    """`make_ledger(token)`: a ledger driver sending another bearer token (one of settings.API_TOKENS)."""
    return lambda token: Ledger(authenticated_client(token))


@dataclass(frozen=True)
class Snapshot:
    """Everything a command could write: the events, every account row and the idempotency keys."""

    events: list[tuple]
    accounts: list[tuple]
    idempotency_keys: list[str]


def take_snapshot() -> Snapshot:
    return Snapshot(
        events=list(models.Event.objects.order_by("position").values_list("position", "aggregate_id")),
        accounts=list(
            models.Account.objects.order_by("id").values_list(
                "id", "balance", "status", "version", "updated_at"
            )
        ),
        idempotency_keys=list(models.IdempotencyKey.objects.order_by("key").values_list("key", flat=True)),
    )


@pytest.fixture
def unchanged() -> Callable[[], Callable[..., None]]:
    """`check = unchanged()` before a request; `check()` after asserts that it wrote nothing, or nothing
    but the idempotency keys named in `check(new_keys={...})`."""

    def start() -> Callable[..., None]:
        before = take_snapshot()

        def check(new_keys: frozenset[str] | set[str] = frozenset()) -> None:
            after = take_snapshot()
            assert (after.events, after.accounts) == (before.events, before.accounts)
            assert set(after.idempotency_keys) == set(before.idempotency_keys) | set(new_keys)

        return check

    return start


def _assert_problem(response: Any, status: int, type_suffix: str | None = None) -> dict:
    """The response is problem+json with the contract's fields and the given status."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert body.keys() >= PROBLEM_FIELDS
    assert body["status"] == status
    assert body["title"] and body["detail"]
    if type_suffix is not None:
        assert body["type"].endswith("/" + type_suffix), body["type"]
    return body


@pytest.fixture
def assert_problem() -> Callable[..., dict]:
    """`assert_problem(response, 409, "insufficient-funds")` checks a problem+json answer."""
    return _assert_problem


def _stored_events(account_id: uuid.UUID) -> list[models.Event]:
    return list(models.Event.objects.filter(aggregate_id=account_id).order_by("aggregate_version"))


@pytest.fixture
def stored_events() -> Callable[[uuid.UUID], list[models.Event]]:
    """The rows of `events` of one account, oldest first."""
    return _stored_events
