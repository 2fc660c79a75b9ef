"""RabbitMQ stopped and started while commands flow (a private node): no command fails, all converges."""

from __future__ import annotations

import random
import threading
import time
from decimal import Decimal

import pytest
import requests

from devkit.private_rabbitmq import PrivateRabbitMQ
from tests.e2e.conftest import System

SIGNS = {"deposit": 1, "transfer_in": 1, "withdrawal": -1, "transfer_out": -1}


@pytest.mark.chaos
def test_commands_keep_succeeding_through_a_broker_outage_and_everything_converges(
    system_on_private_broker: System, private_broker: PrivateRabbitMQ, http: requests.Session
) -> None:
    system = system_on_private_broker
    accounts = [system.open_account(http, owner=f"outage-{i}", deposit="100.00") for i in range(10)]
    statuses: list[int] = []
    stop = threading.Event()

    def traffic(seed: int) -> None:
        rng = random.Random(seed)
        with requests.Session() as session:
            while not stop.is_set():
                amount = f"{rng.randint(1, 2000) / 100:.2f}"
                if rng.random() < 0.5:
                    source, target = rng.sample(accounts, 2)
                    body = {"from_account": str(source), "to_account": str(target), "amount": amount}
                    statuses.append(system.command(session, "/api/transfers", body).status_code)
                else:
                    kind = rng.choice(["deposit", "withdraw"])
                    path = f"/api/accounts/{rng.choice(accounts)}/{kind}"
                    statuses.append(system.command(session, path, {"amount": amount}).status_code)
                time.sleep(0.01)

    workers = [threading.Thread(target=traffic, args=(seed,)) for seed in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(2)
        private_broker.stop()
        before_restart = len(statuses)
        time.sleep(3)
        private_broker.start()
        time.sleep(2)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)

    assert set(statuses) <= {200, 201, 409}, sorted(set(statuses))  # 409: insufficient funds only
    assert len(statuses) > before_restart > 0  # commands were accepted during and after the outage
    assert system.processes["relay"].logged("broker_connection_failed")
    truth = system.wait_until_converged(http, timeout=120)
    for account_id in accounts:
        balance, version = truth[account_id]
        read = system.read_account(http, account_id).json()
        assert Decimal(read["balance"]) == balance and read["version"] == version
        rows = system.statement(http, account_id)
        assert [row["version"] for row in rows] == list(range(2, version + 1))
        assert sum(SIGNS[row["kind"]] * Decimal(row["amount"]) for row in rows) == balance
    assert system.unpublished() == 0
