"""Failures injected with Docker's own means: the broker container stopped while commands keep coming (the
read side carried by logical replication between the two PostgreSQL containers), and the projector container
crashing (brought back by its restart policy). Every balance ends exact."""

from __future__ import annotations

import os
import signal
import time
from decimal import Decimal

import requests

from devkit.polling import eventually
from tests.compose.conftest import ComposeSystem


def test_broker_stopped_the_read_side_follows_by_replication_then_back_on_the_broker(
    system: ComposeSystem, http: requests.Session
) -> None:
    accounts = [system.open_account(http, f"outage-{i}", deposit="100.00") for i in range(4)]
    system.assert_read_side_exact(http)
    by_replication = system.applied("replication")

    system.compose("stop", "rabbitmq")
    try:
        # Ten seconds of transfers around the ring and deposits: the write side never needs the broker.
        deadline, n = time.monotonic() + 10, 0
        while time.monotonic() < deadline:
            source, target = accounts[n % 4], accounts[(n + 1) % 4]
            body = {"from_account": str(source), "to_account": str(target), "amount": "1.00"}
            assert system.command(http, "/api/transfers", body).status_code == 201
            deposited = system.command(http, f"/api/accounts/{target}/deposit", {"amount": "0.50"})
            assert deposited.status_code == 200, deposited.text
            n += 1
        # Read-your-writes still holds: the fallback applies what the broker cannot bring.
        read = system.read_account(http, target, min_version=deposited.json()["version"], wait_ms=30000)
        assert read.status_code == 200, read.text
        assert system.projection(http)["mode"] == "replication"
        assert system.unpublished() > 0, "the relay cannot have published while the broker was down"
        system.assert_read_side_exact(http)
        assert system.applied("replication") > by_replication
    finally:
        system.compose("start", "rabbitmq")

    # The relay publishes the backlog (the projector sees it as duplicates) and the projection is back on the
    # broker path: new events arrive by RabbitMQ again.
    eventually(lambda: system.unpublished() == 0, timeout=120, interval=1, what="the relay's backlog")
    eventually(
        lambda: system.projection(http)["mode"] == "broker", timeout=120, interval=1, what="broker mode"
    )
    by_broker = system.applied("broker")
    for account in accounts:
        assert system.command(http, f"/api/accounts/{account}/deposit", {"amount": "2.00"}).status_code == 200
    system.assert_read_side_exact(http)
    eventually(lambda: system.applied("broker") - by_broker >= 4, timeout=30, what="events by the broker")
    total = sum(Decimal(system.read_account(http, a).json()["balance"]) for a in accounts)
    assert total == Decimal("400.00") + Decimal("0.50") * n + Decimal("8.00")


def test_a_crashed_projector_is_brought_back_by_the_restart_policy_with_nothing_lost(
    system: ComposeSystem, http: requests.Session
) -> None:
    """The projector's main process killed (SIGKILL) from the host, as a crash kills it. Not `docker compose
    kill`: Docker counts a kill through its API as a deliberate stop, which the restart policy leaves down
    (engine 20.10: exited 137 and not restarted)."""
    account = system.open_account(http, "crash", deposit="10.00")
    system.assert_read_side_exact(http)
    restarts = int(system.inspect("projector", "{{.RestartCount}}"))

    os.kill(int(system.inspect("projector", "{{.State.Pid}}")), signal.SIGKILL)
    for _ in range(10):  # while it is down and restarting
        assert system.command(http, f"/api/accounts/{account}/deposit", {"amount": "1.00"}).status_code == 200

    eventually(
        lambda: (
            int(system.inspect("projector", "{{.RestartCount}}")) > restarts
            and system.inspect("projector", "{{.State.Health.Status}}") == "healthy"
        ),
        timeout=120,
        interval=1,
        what="the projector restarted and healthy",
    )
    system.assert_read_side_exact(http)
    versions = [row["version"] for row in system.statement(http, account)]
    assert versions == list(range(2, 13)), "every deposit exactly once"
