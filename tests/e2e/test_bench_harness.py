"""The benchmark harness (`make bench`) run end to end in its tiny mode on the end-to-end tier's databases:
every scenario runs against the real processes, and the results it writes hold every promised key with a
number that could be true. The numbers themselves are not judged here (benchmarks print, tests assert)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from bench import stages
from devkit.processes import PYTHON, REPO
from tests.e2e.conftest import setting

pytestmark = pytest.mark.slow

RATES = ("drain_events_per_s", "sustained_events_per_s", "http_deposit_rps", "http_read_rps")
LAGS_MS = ("steady_lag_p50_ms", "steady_lag_p95_ms", "steady_lag_p99_ms")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is missing: make test-e2e installs it (deploy/local/install-missing.sh)")
    directory = tmp_path_factory.mktemp("bench-results")
    env = {
        **os.environ,
        **{
            name: setting(name)
            for name in (
                "WRITE_DATABASE_URL",
                "READ_DATABASE_URL",
                "TEST_WRITE_RABBITMQ_URL",
                "TEST_READ_RABBITMQ_URL",
            )
        },
    }
    run = subprocess.run(
        [PYTHON, "-m", "bench", "--tiny", "--use-environment", "--results-dir", str(directory)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-4000:]}"
    assert "| drain |" in run.stdout  # the table is printed
    return directory


def test_the_results_hold_every_promised_key_with_plausible_numbers(results: Path) -> None:
    summary = json.loads((results / "latest.json").read_text())
    assert datetime.fromisoformat(summary["date"]).tzinfo is not None
    assert summary["mode"] == "tiny" and summary["runs"] == 1
    for key in RATES:
        assert 0 < summary[key] < 1_000_000, key
    assert 0 < summary["steady_lag_p50_ms"] <= summary["steady_lag_p95_ms"] <= summary["steady_lag_p99_ms"]
    assert 0 < summary["steady_100_lag_p50_ms"] <= summary["steady_100_lag_p99_ms"] < 60_000
    assert summary["steady_lag_p99_ms"] < 60_000
    assert summary["outage_recovery_s"] is not None and 0 <= summary["outage_recovery_s"] < 60
    # The broker was down for 2 s: unless the replication path carried them, some events waited for it.
    outage = summary["scenarios"]["outage"][0]
    assert outage["broker_down_s"] >= 2
    assert 0 < summary["outage_max_lag_s"] < 120
    if outage["paths"].get("replication", 0) == 0:
        assert summary["outage_max_lag_s"] >= 2
    machine = summary["machine"]
    assert machine["cores"] == os.cpu_count() and machine["cpu_model"]
    assert machine["load_average_1m_max"] >= 0
    assert 0 < summary["environment"]["postgresql_round_trip_ms"] < 100
    assert set(summary["targets"]) >= {
        "drain_events_per_s",
        "steady_100_lag_p99_ms",
        "steady_lag_p99_ms",
        "outage_recovery_s",
    }


def test_every_command_of_the_run_succeeded_and_every_event_was_counted(results: Path) -> None:
    scenarios = json.loads((results / "latest.json").read_text())["scenarios"]
    assert scenarios["drain"][0]["events"] >= 600
    assert scenarios["sustained"][0]["events"] > 0
    for name in ("steady", "outage"):
        statuses = scenarios[name][0]["statuses"]
        assert set(statuses) <= {"200", "201"}, (name, statuses)
        assert scenarios[name][0]["events"] >= sum(statuses.values())  # a transfer is two events
    http = scenarios["http"][0]
    assert http["deposit"]["non_2xx"] == 0 and http["read"]["non_2xx"] == 0
    assert http["deposit"]["socket_errors"] == 0 and http["read"]["socket_errors"] == 0


def test_the_steady_lag_is_split_by_stage_and_its_tail_has_an_owner(results: Path) -> None:
    steady = json.loads((results / "latest.json").read_text())["scenarios"]["steady"][0]
    for phase in (steady["at_100"], steady):
        assert set(phase["stages_ms"]) == set(stages.STAGES.values())
        for stage, figures in phase["stages_ms"].items():
            assert figures["p50"] is not None, (stage, figures)
            assert 0 < figures["p50"] <= figures["p99"] < 60_000, (stage, figures)
    table = (results / "latest.md").read_text()
    assert "- at 100/s: command answered" in table and "the larger p99 of the two steps" in table


def test_the_table_and_the_plots_are_written(results: Path) -> None:
    table = (results / "latest.md").read_text()
    for label in (
        "drain",
        "sustained, end to end",
        "steady 100/s, lag p99",
        "steady 200/s, lag p99",
        "HTTP deposits",
        "outage",
    ):
        assert f"| {label}" in table, label
    assert "PostgreSQL round trip (SELECT 1 after 5 ms idle)" in table and "Steady lag by stage" in table
    stamped = [path for path in results.glob("*.json") if path.name != "latest.json"]
    assert len(stamped) == 1 and stamped[0].read_text() == (results / "latest.json").read_text()
    for name in ("latest-lag.png", "latest-lag-histogram.png", "latest-throughput.png"):
        assert (results / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_each_scenario_says_where_the_cpu_went(results: Path) -> None:
    summary = json.loads((results / "latest.json").read_text())
    for name, runs in summary["scenarios"].items():
        shares = runs[0]["cpu_cores"]
        # The pipeline worked in every scenario, and so did the run's own replication pair's walsender, which
        # decodes every commit of the write database whether the broker carries the events or not.
        assert shares.get("relay", 0) > 0 and shares.get("projector", 0) > 0, (name, shares)
        assert shares.get("write-db", 0) > 0 and shares.get("read-db", 0) > 0, (name, shares)
        assert shares.get("replication: walsender", 0) > 0, (name, shares)
        assert all(0 <= share <= (os.cpu_count() or 1) for share in shares.values()), (name, shares)
    table = (results / "latest.md").read_text()
    assert "CPU by process group during each scenario" in table
    assert "The replication fallback with the broker healthy, in cores: sustained" in table
    # Inside the tests' environment the machine's other subscriptions are left as they are.
    assert summary["environment"]["subscriptions_paused"] == []
