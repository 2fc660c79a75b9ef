"""The broker-outage experiment, on a RabbitMQ node of the test's own (the shared broker is never stopped)."""

from __future__ import annotations

from uuid import UUID

import psycopg2
import pytest
import requests

from devkit.private_rabbitmq import PrivateRabbitMQ
from tests.e2e.conftest import System
from tests.e2e.lab_experiments import run_experiment


def test_without_consent_it_warns_and_stops_nothing(
    system_on_private_broker: System, private_broker: PrivateRabbitMQ, http: requests.Session
) -> None:
    run = run_experiment(
        system_on_private_broker,
        "broker-outage",
        env={"LAB_ALLOW_BROKER_STOP": "0", "LAB_RABBITMQ_NODE": private_broker.nodename},
    )

    assert run.returncode == 2, run.stdout + run.stderr
    assert "WARNING" in run.stdout and "--yes" in run.stdout and "LAB_ALLOW_BROKER_STOP=1" in run.stdout
    assert private_broker.nodename in run.stdout
    assert not system_on_private_broker.processes["relay"].logged("broker_connection_failed")


@pytest.mark.slow
def test_it_reports_the_outage_as_the_system_lived_it(
    system_on_private_broker: System, private_broker: PrivateRabbitMQ, http: requests.Session
) -> None:
    system = system_on_private_broker
    run = run_experiment(
        system,
        "broker-outage",
        "--yes",
        "--outage-seconds",
        "6",
        env={"LAB_RABBITMQ_NODE": private_broker.nodename},
        timeout=150,
    )
    print(run.stdout)  # the report, for `pytest -s`

    assert run.returncode == 0, run.stdout + run.stderr
    result = run.result
    assert result["commands"] == result["accepted"] > 0
    assert run.shows("commands during the outage", f"{result['accepted']} of {result['commands']} accepted")
    # The broker really went away and came back: the relay lost it, the outbox grew, then drained.
    assert system.processes["relay"].logged("broker_connection_failed")
    assert result["backlog_max"] > 0 and system.unpublished() == 0
    # The versions it reports are the write side's, and the read side shows them.
    truth = system.write_accounts()
    for account_id, version in result["accounts"].items():
        assert truth[UUID(account_id)][1] == version
        assert system.read_account(http, UUID(account_id)).json()["version"] == version
    assert result["consistent"] and run.shows("read side equals write side", "yes")
    # The paths it reports are the ones the read database recorded for those events.
    assert result["applied_by_path"] == _applied_by_path(system, result)
    assert sum(result["applied_by_path"].values()) == result["accepted"]
    assert result["modes"][0] == result["modes"][-1] == "broker"
    if result["fallback_used"]:
        assert "replication" in result["modes"] and result["applied_by_path"].get("replication", 0) > 0
        assert result["projected_during_outage"] > 0
        # The outbox's events, applied from the replica already, came through RabbitMQ again: duplicates.
        assert (
            result["broker_duplicates"]
            == result["accepted"]
            == system.metric("projector", "cqrs_events_duplicate_total", path="broker")
        )
    else:
        assert result["projected_during_outage"] == 0


def _applied_by_path(system: System, result: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    with psycopg2.connect(system.read_database_url) as connection, connection.cursor() as cursor:
        for account_id, version in result["accounts"].items():
            cursor.execute(
                "SELECT path, count(*) FROM applied_events WHERE aggregate_id = %s AND version > %s"
                " AND version <= %s GROUP BY path",
                [account_id, result["first_versions"][account_id], version],
            )
            for path, count in cursor.fetchall():
                counts[path] = counts.get(path, 0) + count
    connection.close()
    return counts
