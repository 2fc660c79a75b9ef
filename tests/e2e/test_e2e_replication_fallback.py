"""The replication fallback end to end: with RabbitMQ stopped (a private node), a command still reaches the
read API within seconds through the replicated events table, /api/projection and the metrics say
`replication`, and once RabbitMQ is back the projector returns to the broker path, ignoring the copies the
relay then publishes."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import psycopg2
import pytest
import requests

from devkit.polling import eventually
from devkit.private_rabbitmq import PrivateRabbitMQ
from tests.e2e.conftest import System

VISIBLE_WITHIN_SECONDS = 5.0


def _projection(system: System, http: requests.Session) -> dict[str, Any]:
    response = http.get(f"{system.read_api}/api/projection", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _applied_path(system: System, account_id: Any, version: int) -> str | None:
    with psycopg2.connect(system.read_database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT path FROM applied_events WHERE aggregate_id = %s AND version = %s",
            (str(account_id), version),
        )
        row = cursor.fetchone()
    connection.close()
    return row[0] if row else None


def _deposit(system: System, http: requests.Session, account_id: Any, amount: str) -> int:
    response = system.command(http, f"/api/accounts/{account_id}/deposit", {"amount": amount})
    assert response.status_code == 200, response.text
    return response.json()["version"]


@pytest.mark.slow
def test_with_the_broker_stopped_a_command_is_projected_through_replication_then_the_broker_path_returns(
    system_on_private_broker: System, private_broker: PrivateRabbitMQ, http: requests.Session
) -> None:
    system = system_on_private_broker
    account = system.open_account(http, owner="fallback", deposit="10.00")
    system.wait_until_converged(http)
    assert _projection(system, http)["mode"] == "broker"
    assert _projection(system, http)["replication"]["status"] == "streaming"

    private_broker.stop()
    eventually(
        lambda: _projection(system, http)["mode"] == "replication", timeout=10, what="replication mode"
    )
    assert system.metric("projector", "cqrs_projection_mode", path="replication") == 1
    assert system.metric("projector", "cqrs_projection_mode", path="broker") == 0

    started = time.monotonic()
    version = _deposit(system, http, account, "5.00")
    read = system.read_account(http, account, min_version=version, wait_ms=int(VISIBLE_WITHIN_SECONDS * 1000))
    visible_after = time.monotonic() - started
    assert read.status_code == 200, read.text
    assert Decimal(read.json()["balance"]) == Decimal("15.00")
    assert _applied_path(system, account, version) == "replication"
    eventually(  # counted right after the commit that the read API saw
        lambda: (
            system.metric("projector", "cqrs_events_applied_total", path="replication", type="MoneyDeposited")
            >= 1
        ),
        timeout=5,
        what="the event counted on the replication path",
    )
    assert system.unpublished() >= 1  # the relay could not publish it: only replication brought it
    print(f"\nbroker down: command visible on the read API after {visible_after:.3f} s (replication path)")

    private_broker.start()
    started = time.monotonic()
    eventually(lambda: _projection(system, http)["mode"] == "broker", timeout=30, what="broker mode again")
    print(f"broker back: projector on the broker path again after {time.monotonic() - started:.1f} s")
    assert system.metric("projector", "cqrs_projection_mode", path="broker") == 1
    eventually(lambda: system.unpublished() == 0, timeout=30, what="the outbox to drain")
    # The relay's late copy of the deposit reaches the projector, which ignores it.
    eventually(
        lambda: system.metric("projector", "cqrs_events_duplicate_total", path="broker") >= 1,
        timeout=15,
        what="the late copy counted as a duplicate",
    )

    version = _deposit(system, http, account, "1.00")
    assert system.read_account(http, account, min_version=version).status_code == 200
    assert _applied_path(system, account, version) == "broker"
    truth = system.wait_until_converged(http)
    balance, version = truth[account]
    read = system.read_account(http, account).json()
    assert Decimal(read["balance"]) == balance == Decimal("16.00") and read["version"] == version
