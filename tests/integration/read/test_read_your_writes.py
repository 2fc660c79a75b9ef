"""Read-your-writes: min_version and X-Consistency-Token wait for the projection, or answer 503."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.db import connection
from django.test import Client
from prometheus_client import REGISTRY

from cqrs_common import config
from read_service.projections.apply import BROKER, apply_events
from read_service.queries import listener
from tests.integration.read.conftest import AccountHistory


def _open(deposits: int = 0) -> AccountHistory:
    history = AccountHistory()
    apply_events([history.opened(), *(history.deposited("1.00") for _ in range(deposits))], path=BROKER)
    return history


@pytest.mark.django_db
def test_fresh_enough_answers_at_once(client: Client) -> None:
    alice = _open(deposits=2)
    started = time.monotonic()

    by_param = client.get(f"/api/accounts/{alice.account_id}", {"min_version": 3})
    by_token = client.get(
        f"/api/accounts/{alice.account_id}", HTTP_X_CONSISTENCY_TOKEN=f"{alice.account_id}:2"
    )

    assert by_param.status_code == 200 and by_param.json()["version"] == 3
    assert by_token.status_code == 200 and by_token.json()["version"] == 3
    assert time.monotonic() - started < 1


@pytest.mark.django_db
@pytest.mark.parametrize("via", ["param", "token"])
def test_behind_answers_503_with_retry_after(client: Client, via: str) -> None:
    alice = _open()
    params = {"wait_ms": 100}
    headers = {}
    if via == "param":
        params["min_version"] = 2
    else:
        headers["HTTP_X_CONSISTENCY_TOKEN"] = f"{alice.account_id}:2"
    started = time.monotonic()

    response = client.get(f"/api/accounts/{alice.account_id}", params, **headers)

    assert time.monotonic() - started >= 0.1
    assert response.status_code == 503 and response["Retry-After"] == "1"
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 503


@pytest.mark.django_db
def test_account_not_projected_yet_is_503_not_404_when_waiting(client: Client) -> None:
    response = client.get(f"/api/accounts/{uuid.uuid4()}", {"min_version": 1, "wait_ms": 0})
    assert response.status_code == 503 and response["Retry-After"] == "1"


@pytest.mark.django_db
def test_transactions_wait_too(client: Client) -> None:
    alice = _open(deposits=1)
    ok = client.get(f"/api/accounts/{alice.account_id}/transactions", {"min_version": 2})
    behind = client.get(f"/api/accounts/{alice.account_id}/transactions", {"min_version": 3, "wait_ms": 0})
    assert ok.status_code == 200 and ok.json()["count"] == 1
    assert behind.status_code == 503


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "token", "field"),
    [
        ({"min_version": "0"}, None, "min_version"),
        ({"min_version": "two"}, None, "min_version"),
        ({"min_version": "1", "wait_ms": "30001"}, None, "wait_ms"),
        ({"min_version": "1", "wait_ms": "-1"}, None, "wait_ms"),
        ({"wait_ms": "soon"}, None, "wait_ms"),
        ({"min_version": ""}, None, "min_version"),
        ({"min_version": "2", "wait_ms": ""}, None, "wait_ms"),
        ({}, "not-a-token", "X-Consistency-Token"),
        ({}, f"{uuid.uuid4()}:0", "X-Consistency-Token"),
        ({}, f"{uuid.uuid4()}", "X-Consistency-Token"),
    ],
)
def test_bad_consistency_parameters_are_400(
    client: Client, params: dict, token: str | None, field: str
) -> None:
    alice = _open()
    headers = {"HTTP_X_CONSISTENCY_TOKEN": token} if token else {}
    response = client.get(f"/api/accounts/{alice.account_id}", params, **headers)
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
    assert field in response.json()["errors"]


def _apply_later(delay: float, events: list) -> threading.Thread:
    def run() -> None:
        try:
            time.sleep(delay)
            apply_events(events, path=BROKER)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_wait_is_satisfied_by_a_concurrent_apply(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    # Rechecks so rare that only the NOTIFY at commit can end the wait in time.
    monkeypatch.setattr(listener, "RECHECK_SECONDS", 30.0)
    alice = _open()
    thread = _apply_later(0.3, [alice.deposited("5.00")])
    started = time.monotonic()

    response = client.get(f"/api/accounts/{alice.account_id}", {"min_version": 2, "wait_ms": 10000})
    elapsed = time.monotonic() - started
    thread.join()

    assert response.status_code == 200 and response.json()["version"] == 2
    assert response.json()["balance"] == "5.00"
    assert 0.25 <= elapsed < 3
    # The connection goes back to serving requests without listening to anything.
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_listening_channels()")
        assert cursor.fetchone()[0] == 0


@pytest.mark.django_db(transaction=True)
def test_wait_for_an_account_opened_meanwhile(client: Client) -> None:
    bob = AccountHistory("bob")
    thread = _apply_later(0.2, [bob.opened()])

    response = client.get(
        f"/api/accounts/{bob.account_id}",
        HTTP_X_CONSISTENCY_TOKEN=f"{bob.account_id}:1",
        QUERY_STRING="wait_ms=5000",
    )
    thread.join()

    assert response.status_code == 200 and response.json()["owner"] == "bob"


def _wait_in_background(client: Client, account_id: uuid.UUID, wait_ms: int) -> threading.Thread:
    def run() -> None:
        try:
            client.get(f"/api/accounts/{account_id}", {"min_version": 99, "wait_ms": wait_ms})
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _listener_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'read-service-listener' AND datname = current_database()"
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_wait_past_the_bound_is_refused_at_once_and_others_are_served() -> None:
    alice = _open()
    bound = config.read_wait_max_concurrent()
    refused_before = REGISTRY.get_sample_value("cqrs_read_waits_refused_total") or 0
    waiting = [_wait_in_background(Client(), alice.account_id, wait_ms=3000) for _ in range(bound)]
    time.sleep(0.5)  # every one of them is waiting
    in_flight = REGISTRY.get_sample_value("cqrs_read_waits_in_flight")
    started = time.monotonic()

    refused = Client().get(f"/api/accounts/{alice.account_id}", {"min_version": 2, "wait_ms": 3000})
    refused_after = time.monotonic() - started
    fresh_enough = Client().get(f"/api/accounts/{alice.account_id}", {"min_version": 1, "wait_ms": 3000})
    plain = Client().get(f"/api/accounts/{alice.account_id}")
    # However many requests wait, the process listens on one connection of its own.
    listening = _listener_connections()
    for thread in waiting:
        thread.join()

    assert refused.status_code == 503 and refused["Retry-After"] == "1"
    assert refused["Content-Type"] == "application/problem+json"
    assert refused.json()["status"] == 503 and "waits" in refused.json()["detail"]
    assert refused_after < 0.5
    assert fresh_enough.status_code == 200 and plain.status_code == 200
    assert listening == 1
    assert in_flight == bound
    assert REGISTRY.get_sample_value("cqrs_read_waits_refused_total") == refused_before + 1
    # The slots come back: once the others have timed out, a wait is admitted (and times out as it should).
    started = time.monotonic()
    admitted = Client().get(f"/api/accounts/{alice.account_id}", {"min_version": 2, "wait_ms": 300})
    assert admitted.status_code == 503 and time.monotonic() - started >= 0.3


@pytest.mark.django_db(transaction=True)
def test_waits_are_woken_after_the_listener_lost_its_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    alice = _open()
    Client().get(f"/api/accounts/{alice.account_id}", {"min_version": 2, "wait_ms": 300})  # listener started
    assert _listener_connections() == 1
    with connection.cursor() as cursor:  # as a database restart or a network cut would
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'read-service-listener' AND datname = current_database()"
        )
    # Rechecks so rare that only a NOTIFY on the reopened connection can end the wait in time.
    monkeypatch.setattr(listener, "RECHECK_SECONDS", 30.0)
    time.sleep(1.0)  # the listener notices and reconnects
    thread = _apply_later(1.0, [alice.deposited("5.00")])
    started = time.monotonic()

    response = Client().get(f"/api/accounts/{alice.account_id}", {"min_version": 2, "wait_ms": 10000})
    elapsed = time.monotonic() - started
    thread.join()

    assert response.status_code == 200 and response.json()["version"] == 2
    assert elapsed < 5
    assert _listener_connections() == 1
