"""The read API against the real read DB: every endpoint's shape, pagination, filters and errors."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest
from django.test import Client

from read_service.projections.apply import BROKER, apply_events
from read_service.projections.dead_letters import DeadLetterEntry, dead_letters_record
from tests.integration.read.conftest import AccountHistory, transfer

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"
ACCOUNT_KEYS = {"account_id", "owner", "currency", "balance", "status", "version", "opened_at", "updated_at"}


def _projected(*events) -> None:
    outcome = apply_events(list(events), path=BROKER)
    assert not outcome.failed and not outcome.parked


def _open(owner: str = "alice", currency: str = "EUR", deposits: tuple[str, ...] = ()) -> AccountHistory:
    history = AccountHistory(owner, currency)
    _projected(history.opened(), *(history.deposited(amount) for amount in deposits))
    return history


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys() and body["status"] == status
    return body


def test_account_has_the_contract_shape(client: Client) -> None:
    alice = _open("alice", "EUR", deposits=("12.50",))

    response = client.get(f"/api/accounts/{alice.account_id}")

    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == ACCOUNT_KEYS
    assert body["account_id"] == str(alice.account_id)
    assert (body["owner"], body["currency"], body["balance"], body["status"], body["version"]) == (
        "alice",
        "EUR",
        "12.50",
        "open",
        2,
    )
    assert body["opened_at"].endswith("Z") and body["updated_at"] > body["opened_at"]


def test_account_not_projected_is_404_problem(client: Client) -> None:
    body = _problem(client.get(f"/api/accounts/{uuid.uuid4()}"), 404)
    assert "not projected" in body["detail"]
    _problem(client.get("/api/accounts/not-a-uuid"), 404)
    _problem(client.get(f"/api/accounts/{uuid.uuid4()}/transactions"), 404)


def test_account_list_filters_and_paginates(client: Client) -> None:
    owner = f"owner-{uuid.uuid4().hex[:8]}"
    accounts = [_open(owner) for _ in range(5)]
    closing = accounts[1]
    _projected(closing.closed())
    _open(f"someone-else-{uuid.uuid4().hex[:8]}")

    page1 = client.get("/api/accounts", {"owner": owner, "page_size": 2}).json()
    page3 = client.get("/api/accounts", {"owner": owner, "page_size": 2, "page": 3}).json()
    closed = client.get("/api/accounts", {"owner": owner, "status": "closed"}).json()
    open_ = client.get("/api/accounts", {"owner": owner, "status": "open"}).json()

    assert set(page1) == {"count", "next", "previous", "results"}
    assert page1["count"] == 5 and page1["previous"] is None and "page=2" in page1["next"]
    assert [a["account_id"] for a in page1["results"]] == [str(a.account_id) for a in accounts[:2]]
    assert all(set(a) == ACCOUNT_KEYS for a in page1["results"])
    assert page3["next"] is None and "page=2" in page3["previous"]
    assert [a["account_id"] for a in page3["results"]] == [str(accounts[4].account_id)]
    assert [a["account_id"] for a in closed["results"]] == [str(closing.account_id)]
    assert closed["results"][0]["status"] == "closed" and open_["count"] == 4


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "frozen"}, "status"),
        ({"page": "0"}, "page"),
        ({"page": "abc"}, "page"),
        ({"page_size": "0"}, "page_size"),
        ({"owner": "x" * 101}, "owner"),
        # Present but empty is not absent: `?status=` must not list every account as if unfiltered.
        ({"status": ""}, "status"),
        ({"owner": ""}, "owner"),
        ({"page": ""}, "page"),
        ({"page_size": ""}, "page_size"),
    ],
)
def test_account_list_bad_parameters_are_400(client: Client, params: dict, field: str) -> None:
    body = _problem(client.get("/api/accounts", params), 400)
    assert field in body["errors"]


def test_account_list_page_past_the_end_is_404(client: Client) -> None:
    _problem(client.get("/api/accounts", {"owner": f"nobody-{uuid.uuid4()}", "page": 2}), 404)


def test_transactions_are_oldest_first_and_paginated(client: Client) -> None:
    alice, bob = AccountHistory("alice"), AccountHistory("bob")
    _projected(alice.opened(), bob.opened(), alice.deposited("100.00"), alice.withdrawn("0.01"))
    debit, credit = transfer(alice, bob, "50.00")
    _projected(debit, credit, alice.deposited("1.00", "INV-1"), *(alice.deposited("1.00") for _ in range(2)))

    first = client.get(f"/api/accounts/{alice.account_id}/transactions", {"page_size": 4}).json()
    second = client.get(f"/api/accounts/{alice.account_id}/transactions", {"page_size": 4, "page": 2}).json()
    bobs = client.get(f"/api/accounts/{bob.account_id}/transactions").json()

    assert first["count"] == 6 and second["next"] is None
    lines = first["results"] + second["results"]
    assert [line["version"] for line in lines] == [2, 3, 4, 5, 6, 7]
    assert lines[0] == {
        "version": 2,
        "kind": "deposit",
        "amount": "100.00",
        "balance_after": "100.00",
        "counterparty": None,
        "transfer_id": None,
        "reference": None,
        "occurred_at": lines[0]["occurred_at"],
    }
    assert [line["kind"] for line in lines[:3]] == ["deposit", "withdrawal", "transfer_out"]
    assert [line["reference"] for line in lines] == [None, None, None, "INV-1", None, None]
    assert [line["balance_after"] for line in lines] == [
        "100.00",
        "99.99",
        "49.99",
        "50.99",
        "51.99",
        "52.99",
    ]
    assert lines[2]["counterparty"] == str(bob.account_id)
    assert lines[2]["transfer_id"] == debit.data["transfer_id"]
    assert bobs["results"] == [
        {
            "version": 2,
            "kind": "transfer_in",
            "amount": "50.00",
            "balance_after": "50.00",
            "counterparty": str(alice.account_id),
            "transfer_id": debit.data["transfer_id"],
            "reference": None,
            "occurred_at": bobs["results"][0]["occurred_at"],
        }
    ]


def test_stats_sum_accounts_and_balances_per_currency(client: Client) -> None:
    before = client.get("/api/stats").json()
    _open("a", "EUR", deposits=("10.00",))
    closing = _open("b", "USD")
    _projected(closing.closed())
    _open("c", "USD", deposits=("0.50", "0.25"))

    after = client.get("/api/stats").json()

    assert set(after) == {"accounts", "open_accounts", "total_balance", "events_applied"}
    assert after["accounts"] - before["accounts"] == 3
    assert after["open_accounts"] - before["open_accounts"] == 2
    assert after["events_applied"] - before["events_applied"] == 7
    grown = {
        c: Decimal(v) - Decimal(before["total_balance"].get(c, "0"))
        for c, v in after["total_balance"].items()
    }
    assert grown["EUR"] == Decimal("10.00") and grown["USD"] == Decimal("0.75")
    assert all(len(v.split(".")[1]) == 2 for v in after["total_balance"].values())


def test_projection_reports_mode_progress_lag_and_dead_letters(client: Client) -> None:
    before = client.get("/api/projection").json()
    history = _open()
    dead_letters_record([DeadLetterEntry("m-1", "malformed_json", "Expecting value")])

    after = client.get("/api/projection").json()

    # The contract's fields, plus `replication`: the subscription that feeds the fallback path.
    assert set(after) == {
        "mode",
        "events_applied",
        "last_event_at",
        "lag_seconds",
        "dead_lettered",
        "replication",
    }
    assert after["mode"] == "broker"
    assert after["replication"]["status"] in {"streaming", "stopped", "disabled", "absent"}
    assert set(after["replication"]) == {"status", "subscription", "apply_errors", "last_received_at"}
    assert after["events_applied"] == before["events_applied"] + 1
    assert after["dead_lettered"] == before["dead_lettered"] + 1
    assert after["last_event_at"].endswith("Z")
    assert isinstance(after["lag_seconds"], float) and after["lag_seconds"] >= 0
    # An event waiting for its predecessor makes the lag at least as old as that event.
    history.version += 1
    apply_events([history.deposited("1.00")], path=BROKER)
    assert client.get("/api/projection").json()["lag_seconds"] >= 60


def test_schema_documents_every_endpoint(client: Client) -> None:
    from django.urls import URLPattern, URLResolver, get_resolver

    def routes(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from routes(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern)

    response = client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    schema = json.loads(response.content)
    documented = set(schema["paths"])
    api_routes = {
        "/" + r.replace("<uuid:", "{").replace(">", "}") for r in routes(get_resolver().url_patterns)
    }
    api_routes = {r for r in api_routes if r.startswith("/api/") and r != "/api/schema"}
    assert api_routes == documented
    assert len(documented) == 7
    for path, item in schema["paths"].items():
        assert "200" in item["get"]["responses"], path


def test_the_schema_documents_a_statement_lines_reference(client: Client) -> None:
    response = client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    line = json.loads(response.content)["components"]["schemas"]["StatementLineOutput"]
    assert "reference" in line["required"]
    assert (line["properties"]["reference"]["type"], line["properties"]["reference"]["nullable"]) == (
        "string",
        True,
    )


def test_health_readiness_and_metrics(client: Client) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
    assert client.get("/metrics").status_code == 200
