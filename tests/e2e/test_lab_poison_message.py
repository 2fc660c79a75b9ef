"""The poison-message experiment: the dead letter it reports is the one RabbitMQ and the read DB recorded."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import psycopg2
import requests

from cqrs_common.messaging import DEAD_LETTER_QUEUE, Consumer
from tests.e2e.conftest import System
from tests.e2e.lab_experiments import run_experiment


def test_it_reports_the_dead_letter_and_its_replay_as_recorded(
    system: System, http: requests.Session
) -> None:
    duplicates_before = system.metric("projector", "cqrs_events_duplicate_total", path="broker")
    run = run_experiment(system, "poison-message")
    print(run.stdout)  # the report, for `pytest -s`

    assert run.returncode == 0, run.stdout + run.stderr
    result = run.result
    event_id, account_id = result["event_id"], UUID(result["account_id"])
    [record] = result["records"]
    assert record["message_id"] == event_id and record["reason"] == "invalid_envelope"
    assert record["in_queue"] and "amount" in record["detail"]
    assert result["projection_dead_lettered"] == [0, 1, 0] and result["dlq_after"] == 0

    # The projector logged and counted the dead letter; the read DB keeps its record, marked replayed.
    [logged] = system.processes["projector"].logged("event_dead_lettered", message_id=event_id)
    assert logged["reason"] == "invalid_envelope"
    assert system.metric("projector", "cqrs_events_dead_lettered_total", reason="invalid_envelope") == 1
    assert _dead_letters(system, event_id) == [("invalid_envelope", True)]
    with Consumer(system.read_broker_url, connection_name="lab-test") as broker:
        assert broker.message_count(DEAD_LETTER_QUEUE) == 0

    # The replayed copy was a duplicate: counted once, applied never; the account is the write side's.
    duplicates = system.metric("projector", "cqrs_events_duplicate_total", path="broker")
    duplicates -= duplicates_before
    assert result["duplicates_counted"] == duplicates == 1
    balance, version = system.write_accounts()[account_id]
    read = (Decimal(result["read_balance"]), result["read_version"])
    assert read == (balance, version) == (Decimal("15.00"), 3)
    assert [row["amount"] for row in system.statement(http, account_id)] == ["10.00", "5.00"]
    assert result["statement_lines"] == 2 and result["consistent"]


def _dead_letters(system: System, message_id: str) -> list[tuple[str, bool]]:
    with psycopg2.connect(system.read_database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT reason, replayed_at IS NOT NULL FROM dead_letters WHERE message_id = %s", [message_id]
        )
        rows = cursor.fetchall()
    connection.close()
    return rows
