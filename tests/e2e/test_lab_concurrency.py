"""The concurrency experiment: the 412s and the single effect it reports are what the event store holds."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import psycopg2
import requests

from tests.e2e.conftest import System
from tests.e2e.lab_experiments import run_experiment

ROUNDS = 10
COPIES = 6


def test_it_reports_one_winner_per_race_and_one_effect_per_key(
    system: System, http: requests.Session
) -> None:
    run = run_experiment(system, "concurrency", "--rounds", str(ROUNDS), "--retries", str(COPIES))
    print(run.stdout)  # the report, for `pytest -s`

    assert run.returncode == 0, run.stdout + run.stderr
    race, retried = run.result["if_match"], run.result["idempotency"]
    truth = system.write_accounts()

    # If-Match: one withdrawal per round was written, every other one refused without a trace.
    assert race["rounds"] == race["won"] == race["refused"] == ROUNDS and race["other"] == 0
    assert run.shows("refused (412 Precondition Failed)", ROUNDS)
    raced = UUID(race["account_id"])
    assert _event_types(system, raced) == ["AccountOpened", "MoneyDeposited"] + ["MoneyWithdrawn"] * ROUNDS
    assert truth[raced] == (Decimal("100.00") - ROUNDS, race["version"])
    assert Decimal(race["balance"]) == truth[raced][0]

    # Idempotency-Key: every copy answered alike, one deposit written, the reused key refused.
    assert retried["requests"] == retried["ok"] == COPIES and retried["replayed"] == COPIES - 1
    assert retried["same_body"] and retried["effects"] == 1 and retried["reuse_status"] == 422
    keyed = UUID(retried["account_id"])
    assert _event_types(system, keyed) == ["AccountOpened", "MoneyDeposited", "MoneyDeposited"]
    assert truth[keyed] == (Decimal("35.00"), retried["version"]) and retried["balance"] == "35.00"
    assert system.read_account(http, keyed, min_version=retried["version"]).json()["balance"] == "35.00"


def _event_types(system: System, account_id: UUID) -> list[str]:
    with psycopg2.connect(system.write_database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT event_type FROM events WHERE aggregate_id = %s ORDER BY aggregate_version",
            [str(account_id)],
        )
        types = [row[0] for row in cursor.fetchall()]
    connection.close()
    return types
