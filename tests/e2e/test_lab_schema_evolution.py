"""The schema-evolution experiment: what it prints about both versions is what the databases and the APIs
hold, the rebuild built what the projector built live, and the stored version 1 rows are still version 1."""

from __future__ import annotations

import json
from decimal import Decimal
from uuid import UUID

import psycopg2
import requests

from tests.e2e.conftest import System
from tests.e2e.lab_experiments import run_experiment

DEPOSITS = 8


def _stored(url: str, accounts: list[str]) -> list[tuple]:
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT event_type, schema_version, data FROM events WHERE aggregate_id = ANY(%s::uuid[])"
            " ORDER BY position",
            [accounts],
        )
        rows = cursor.fetchall()
    connection.close()
    return rows


def test_both_versions_project_alike_and_the_rebuild_equals_live(
    system: System, http: requests.Session
) -> None:
    run = run_experiment(system, "schema-evolution", "--deposits", str(DEPOSITS), timeout=300)
    print(run.stdout)  # the report, for `pytest -s`

    assert run.returncode == 0, run.stdout + run.stderr
    result = run.result
    assert (result["v1_deposits"], result["v2_deposits"]) == (DEPOSITS, DEPOSITS)
    assert result["rebuild_exit"] == result["verify_exit"] == 0
    assert result["rebuild_equals_live"] and result["stored_untouched"]
    assert result["v1_references"] == [None]
    assert result["v2_references"] == [None if n % 4 == 3 else f"INV-{n:04d}" for n in range(DEPOSITS)]
    assert run.shows("read models rebuilt = live", "yes") and run.shows("stored rows untouched", "yes")
    assert result["read_v1_us"] > 0 and result["read_v2_us"] > 0 and result["upcast_us"] > 0

    # The store holds both versions as written: version 1 without a reference field, version 2 with one.
    stored = _stored(system.write_database_url, result["accounts"])
    deposits = [(version, data) for event_type, version, data in stored if event_type == "MoneyDeposited"]
    assert sorted({version for version, _ in deposits}) == [1, 2]
    assert all(set(data) == {"amount"} for version, data in deposits if version == 1)
    assert all(set(data) == {"amount", "reference"} for version, data in deposits if version == 2)
    assert len(stored) == result["stored_rows"] == 2 + 2 * DEPOSITS

    # The read API shows them alike: every deposit a line, version 1 ones without a reference.
    truth = system.write_accounts()
    lines = []
    for account_id in map(UUID, result["accounts"]):
        balance, version = truth[account_id]
        read = system.read_account(http, account_id).json()
        assert (Decimal(read["balance"]), read["version"]) == (balance, version)
        lines += system.statement(http, account_id)
    assert len(lines) == 2 * DEPOSITS
    references = [line["reference"] for line in lines]
    assert references.count(None) == DEPOSITS + DEPOSITS // 4
    assert json.dumps(sorted(r for r in references if r)) == json.dumps(
        sorted(r for r in result["v2_references"] if r)
    )
