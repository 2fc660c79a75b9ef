"""Commands through HTTP become queries: the whole pipeline, write-service to read-service."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import requests

from devkit.polling import eventually
from tests.e2e.conftest import System

SIGNS = {"deposit": 1, "transfer_in": 1, "withdrawal": -1, "transfer_out": -1}


def test_a_command_becomes_visible_on_the_read_api(system: System, http: requests.Session) -> None:
    account_id = system.open_account(http, owner="dana", deposit="12.50")

    def projected() -> dict | None:
        response = system.read_account(http, account_id)
        return response.json() if response.status_code == 200 and response.json()["version"] == 2 else None

    account = eventually(projected, timeout=10, what="the account on the read side")
    assert account["owner"] == "dana" and account["currency"] == "EUR"
    assert account["balance"] == "12.50" and account["status"] == "open"
    [row] = system.statement(http, account_id)
    assert row["kind"] == "deposit" and row["amount"] == "12.50" and row["balance_after"] == "12.50"


def test_read_your_writes_returns_the_new_version_at_once(system: System, http: requests.Session) -> None:
    account_id = system.open_account(http, deposit="5.00")
    response = system.command(http, f"/api/accounts/{account_id}/withdraw", {"amount": "2.00"})
    assert response.status_code == 200
    version = response.json()["version"]

    started = time.monotonic()
    read = system.read_account(http, account_id, min_version=version)
    waited = time.monotonic() - started

    assert read.status_code == 200, read.text
    assert read.json()["version"] >= version and read.json()["balance"] == "3.00"
    assert waited < 5.0  # answered by the wait, not by its expiry

    token = response.headers["X-Consistency-Token"]
    by_token = http.get(
        f"{system.read_api}/api/accounts/{account_id}", headers={"X-Consistency-Token": token}, timeout=10
    )
    assert by_token.status_code == 200 and by_token.json()["version"] >= version


def test_a_thousand_concurrent_commands_converge_to_the_write_side(
    system: System, http: requests.Session
) -> None:
    rng = random.Random(20)
    accounts = [system.open_account(http, owner=f"acct-{i}", deposit="100.00") for i in range(20)]

    def command(_: int) -> int:
        with requests.Session() as session:
            kind = rng.choice(["deposit", "withdraw", "transfer", "transfer"])
            amount = f"{rng.randint(1, 4000) / 100:.2f}"
            if kind == "transfer":
                source, target = rng.sample(accounts, 2)
                body = {"from_account": str(source), "to_account": str(target), "amount": amount}
                return system.command(session, "/api/transfers", body).status_code
            account = rng.choice(accounts)
            return system.command(session, f"/api/accounts/{account}/{kind}", {"amount": amount}).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(command, range(1000)))

    assert set(statuses) <= {200, 201, 409}, sorted(set(statuses))  # 409: insufficient funds, refused cleanly
    assert sum(status in (200, 201) for status in statuses) > 500
    truth = system.wait_until_converged(http, timeout=90)

    for account_id in accounts:
        balance, version = truth[account_id]
        read = system.read_account(http, account_id).json()
        assert Decimal(read["balance"]) == balance and read["version"] == version
        rows = system.statement(http, account_id)
        assert sum(SIGNS[row["kind"]] * Decimal(row["amount"]) for row in rows) == balance
        assert [row["version"] for row in rows] == list(range(2, version + 1))  # every event once, in order
        assert Decimal(rows[-1]["balance_after"]) == balance
    stats = http.get(f"{system.read_api}/api/stats", timeout=10).json()
    assert stats["accounts"] == len(truth)
    assert Decimal(stats["total_balance"]["EUR"]) == sum(balance for balance, _ in truth.values())
