"""The late-subscriber experiment: the numbers it prints are the subscriber's own records, and its "correct"
is the write side's truth."""

from __future__ import annotations

import psycopg2

from devkit.reporting import reporting_daily_totals, write_side_daily_totals
from tests.e2e.conftest import System
from tests.e2e.lab_experiments import run_experiment


def test_it_counts_history_live_and_the_duplicates_of_the_switch(system: System) -> None:
    run = run_experiment(system, "late-subscriber", "--history", "150", "--live-seconds", "2", timeout=240)
    print(run.stdout)  # the report, for `pytest -s`

    assert run.returncode == 0, run.stdout + run.stderr
    result = run.result
    assert result["correct"] and run.shows("daily totals", "equal the write side")
    assert result["missing"] == 0 and result["extra"] == 0 and result["phase"] == "live"
    assert result["history_events"] > 0 and result["live_events"] > 0
    assert result["history_events"] >= result["events_before"]
    assert result["history_events"] + result["live_events"] == result["events"]
    assert run.shows("counted from history (log)", result["history_events"])
    assert run.shows("duplicates skipped at the switch", result["duplicates_skipped"])

    # What it printed is what the subscriber recorded, and what it counted is the write side's events.
    subscription = result["subscription"]
    with psycopg2.connect(system.read_database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT history_events, live_events, live_duplicates FROM reporting_subscriptions"
            " WHERE subscription = %s",
            [subscription],
        )
        recorded = cursor.fetchone()
    connection.close()
    assert recorded == (result["history_events"], result["live_events"], result["duplicates_skipped"])
    assert result["counted_by_path"] == {"history": result["history_events"], "live": result["live_events"]}
    with psycopg2.connect(system.write_database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM events")
        assert cursor.fetchone()[0] == result["events"]
    connection.close()
    assert reporting_daily_totals(system.read_database_url, subscription) == write_side_daily_totals(
        system.write_database_url
    )
