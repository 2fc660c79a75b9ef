"""The rebuild experiment: the drift it reports is what verify_read_models finds, and after the rebuild the
read side is the write side again."""

from __future__ import annotations

import os
import subprocess
from decimal import Decimal
from uuid import UUID

import pytest
import requests

from devkit.processes import PYTHON, REPO
from lab.rebuild import SKIPPED
from tests.e2e.conftest import System
from tests.e2e.lab_experiments import run_experiment


def test_it_finds_the_damage_and_the_rebuild_repairs_it(system: System, http: requests.Session) -> None:
    run = run_experiment(system, "rebuild", "--commands", "30", timeout=240)
    if run.returncode == SKIPPED:
        pytest.skip(run.stdout.strip())
    print(run.stdout)  # the report, for `pytest -s`

    assert run.returncode == 0, run.stdout + run.stderr
    result = run.result
    assert result["verify_exit"] == [0, 1, 0] and result["rebuild_exit"] == 0
    # Exactly the two damaged accounts drifted.
    assert result["drifted"] == sorted([result["damaged_balance"], result["emptied_statement"]])
    assert result["statement_lines_deleted"] > 0

    truth = system.write_accounts()
    assert result["rebuilt_accounts"] == len(truth)  # a fresh system: only the experiment's accounts
    events_now = sum(version for _, version in truth.values())  # the rebuild saw all but the latest deposits
    assert events_now - result["deposits_during_rebuild"] <= result["rebuilt_events"] <= events_now
    for account_id in map(UUID, result["accounts"]):
        balance, version = truth[account_id]
        read = system.read_account(http, account_id).json()
        assert (Decimal(read["balance"]), read["version"]) == (balance, version)
        assert len(system.statement(http, account_id)) == version - 1
    damaged = truth[UUID(result["damaged_balance"])][0]
    assert Decimal(result["restored_balance"]) == Decimal(result["true_balance"]) == damaged
    assert result["matches_write_side"]

    # And the verdict holds when checked apart from the experiment.
    verified = subprocess.run(
        [PYTHON, "-m", "read_service", "verify_read_models", "--wait", "10"],
        cwd=REPO,
        env={**os.environ, "READ_DATABASE_URL": system.read_database_url, "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
