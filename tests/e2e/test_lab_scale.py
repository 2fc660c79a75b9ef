"""The scale experiment: nothing parked with two projectors, the running one's partitions taken over by the
standby when it is killed, and its "correct" is the write side's truth."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import psycopg2
import pytest
import requests

from tests.e2e.conftest import System
from tests.e2e.lab_experiments import run_experiment


@pytest.mark.slow
def test_it_shows_partitions_held_by_one_projector_and_taken_over_when_it_is_killed(
    system: System, http: requests.Session
) -> None:
    run = run_experiment(system, "scale", "--commands", "300", "--clients", "6", timeout=180)
    print(run.stdout)  # the report, for `pytest -s`

    assert run.returncode == 0, run.stdout + run.stderr
    result = run.result
    assert result["correct"] and run.shows("balances, versions, statements", "all equal the write side")
    assert result["accepted"] == 300
    assert not system.processes["projector"].running  # the experiment killed it

    # Before the kill the running projector held every partition of the hot accounts (a partition is seen
    # active once it delivers: one without a hot account may show none) and the second stood by; after it,
    # the second held them, received from them (its log says when) and applied events.
    assert result["partitions"] == 4
    used = sorted(set(result["partition_of_account"].values()))
    assert result["active_before_kill"] == {"projector": used, "projector-lab": []}
    assert result["active_after_kill"] == {"projector-lab": used}
    assert result["taken_over"] == used and result["takeover_seconds"] is not None
    assert result["applied_by_standby"] > 0
    # Order by construction: nothing parked, on either projector, before or after the failover.
    assert result["parked"] == 0 and result["left_waiting"] == 0
    assert run.shows("early arrivals parked", 0)
    assert _count(system.read_database_url, "SELECT count(*) FROM pending_events") == 0

    # Each account in one partition of the four, as the standby saw them.
    accounts = [UUID(account_id) for account_id in result["accounts"]]
    assert set(result["partition_of_account"]) == {str(a) for a in accounts}
    assert set(used) <= set(range(result["partitions"]))

    # Its accounts and event count are the write side's; each event was applied exactly once.
    truth = system.write_accounts()
    assert result["events"] == sum(truth[a][1] for a in accounts)
    ids = [[str(a) for a in accounts]]
    of_accounts = "WHERE aggregate_id = ANY(%s::uuid[])"
    written = _count(system.write_database_url, f"SELECT count(*) FROM events {of_accounts}", ids)
    applied = _count(system.read_database_url, f"SELECT count(*) FROM applied_events {of_accounts}", ids)
    assert written == applied == result["events"]
    for account_id in accounts:
        balance, version = truth[account_id]
        read = system.read_account(http, account_id).json()
        assert (Decimal(read["balance"]), read["version"]) == (balance, version)
        assert result["accounts"][str(account_id)]["statement_lines"] == version - 1


def _count(url: str, sql: str, params: list | None = None) -> int:
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(sql, params)
        count = cursor.fetchone()[0]
    connection.close()
    return count
