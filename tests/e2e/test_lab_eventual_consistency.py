"""The eventual-consistency experiment: its counts and balances are the system's."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import psycopg2
import requests

from tests.e2e.conftest import System
from tests.e2e.lab_experiments import run_experiment

COMMANDS = 120


def test_it_reports_stale_and_fresh_reads_of_commands_the_system_really_took(
    system: System, http: requests.Session
) -> None:
    run = run_experiment(system, "eventual-consistency", "--commands", str(COMMANDS), "--accounts", "3")
    print(run.stdout)  # the report, for `pytest -s`

    assert run.returncode == 0, run.stdout + run.stderr
    result = run.result
    assert result["commands"] == COMMANDS and result["fresh_with_min_version"] == COMMANDS
    assert result["min_version_refused"] == 0 and result["converged"]
    stale = result["stale_reads"]
    assert 0 <= result["not_found_reads"] <= stale <= COMMANDS
    assert (result["max_versions_behind"] >= 1) == (stale > 0)
    assert run.shows("stale immediate reads", f"{stale} of {COMMANDS}")
    assert run.shows("fresh reads with min_version", f"{COMMANDS} of {COMMANDS}")
    waits = result["min_version_ms"]
    assert waits["p50"] <= waits["p99"] <= waits["max"]

    # Every deposit it counted is an event on the write side, and its final numbers are both sides' numbers.
    truth = system.write_accounts()
    accounts = {UUID(account_id): final for account_id, final in result["accounts"].items()}
    assert len(accounts) == 3
    assert _deposits(system, list(accounts)) == COMMANDS
    for account_id, final in accounts.items():
        balance, version = truth[account_id]
        assert final["version"] == final["written_version"] == version
        assert Decimal(final["balance"]) == Decimal(final["written_balance"]) == balance
        read = system.read_account(http, account_id).json()
        assert Decimal(read["balance"]) == balance and read["version"] == version


def _deposits(system: System, accounts: list[UUID]) -> int:
    with psycopg2.connect(system.write_database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM events"
            " WHERE event_type = 'MoneyDeposited' AND aggregate_id = ANY(%s::uuid[])",
            [[str(a) for a in accounts]],
        )
        count = cursor.fetchone()[0]
    connection.close()
    return count
