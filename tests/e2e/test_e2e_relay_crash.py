"""A relay killed between publishing and marking: the batch is published again, the projector ignores the
duplicates, and the read side ends exactly equal to the write side."""

from __future__ import annotations

from decimal import Decimal

import psycopg2
import pytest
import requests

from devkit.polling import eventually
from tests.e2e.conftest import System

SIGNS = {"deposit": 1, "transfer_in": 1, "withdrawal": -1, "transfer_out": -1}


def _has_session(system: System, application_name: str) -> bool:
    with psycopg2.connect(system.write_database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = %s", (application_name,))
        found = cursor.fetchone() is not None
    connection.close()
    return found


@pytest.mark.slow
def test_a_relay_killed_between_publish_and_mark_duplicates_nothing_on_the_read_side(
    system: System, http: requests.Session
) -> None:
    accounts = [system.open_account(http, owner=f"crash-{i}", deposit="50.00") for i in range(3)]
    system.wait_until_converged(http)
    system.processes["relay"].kill()

    for i in range(30):  # accepted while no relay runs: they wait in the outbox
        response = system.command(http, f"/api/accounts/{accounts[i % 3]}/deposit", {"amount": "1.00"})
        assert response.status_code == 200, response.text
    assert system.unpublished() == 30

    # Hold the relay's progress: the next relay publishes the events (and the projector applies them) but
    # cannot advance its mark past them.
    blocker = psycopg2.connect(system.write_database_url)
    with blocker.cursor() as cursor:
        cursor.execute("SELECT mark FROM outbox_progress FOR UPDATE")
    duplicates_before = system.metric("projector", "cqrs_events_duplicate_total", path="broker")
    doomed = system.start_relay()
    system.wait_until_converged(http, timeout=30)
    assert system.unpublished() == 30

    doomed.kill()  # kill -9: published and confirmed, the mark never advanced
    eventually(
        lambda: not _has_session(system, doomed.name), timeout=15, what="the dead relay's session to end"
    )
    blocker.rollback()
    blocker.close()
    system.start_relay()

    eventually(lambda: system.unpublished() == 0, timeout=30, what="the outbox to drain again")
    eventually(
        lambda: (
            system.metric("projector", "cqrs_events_duplicate_total", path="broker") - duplicates_before >= 30
        ),
        timeout=30,
        what="the projector to see the 30 duplicates",
    )
    truth = system.wait_until_converged(http)
    for account_id in accounts:
        balance, version = truth[account_id]
        assert balance == Decimal("60.00")
        read = system.read_account(http, account_id).json()
        assert Decimal(read["balance"]) == balance and read["version"] == version
        rows = system.statement(http, account_id)
        assert [row["version"] for row in rows] == list(range(2, version + 1))  # no row applied twice
        assert sum(SIGNS[row["kind"]] * Decimal(row["amount"]) for row in rows) == balance
