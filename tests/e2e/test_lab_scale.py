"""The scale experiment: the parked events it counts are the ones both projectors logged, and its "correct"
is the write side's truth."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import psycopg2
import pytest
import requests

from tests.e2e.conftest import System
from tests.e2e.lab_experiments import run_experiment


@pytest.mark.slow
def test_it_counts_the_early_arrivals_of_two_competing_projectors(
    system: System, http: requests.Session
) -> None:
    projector = system.processes["projector"]
    logged_before = len(projector.logged("batch_applied"))
    run = run_experiment(system, "scale", "--commands", "300", "--clients", "6", timeout=120)
    print(run.stdout)  # the report, for `pytest -s`

    assert run.returncode == 0, run.stdout + run.stderr
    result = run.result
    assert result["correct"] and run.shows("balances, versions, statements", "all equal the write side")
    assert result["accepted"] == 300

    # Both projectors took part, and every parked event is one of them parking it (PostgreSQL's insert
    # counter of pending_events against the projectors' own batch_applied lines); all were drained.
    assert 0 < result["applied_by_second_projector"] < result["events"]
    parked_by_running = sum(line["parked"] for line in projector.logged("batch_applied")[logged_before:])
    assert result["parked"] == result["parked_by_second_projector"] + parked_by_running
    assert result["drained"] == result["parked"] and result["left_waiting"] == 0
    assert run.shows("early arrivals parked", result["parked"])
    assert _count(system.read_database_url, "SELECT count(*) FROM pending_events") == 0

    # Its accounts and event count are the write side's; each event was applied exactly once.
    truth = system.write_accounts()
    accounts = [UUID(account_id) for account_id in result["accounts"]]
    assert result["events"] == sum(truth[a][1] for a in accounts)
    ids = [[str(a) for a in accounts]]
    of_accounts = "WHERE aggregate_id = ANY(%s::uuid[])"
    written = _count(system.write_database_url, f"SELECT count(*) FROM events {of_accounts}", ids)
    assert written == result["events"]
    applied = _count(system.read_database_url, f"SELECT count(*) FROM applied_events {of_accounts}", ids)
    assert applied == result["events"] == sum(result["applied_by_path"].values())
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
