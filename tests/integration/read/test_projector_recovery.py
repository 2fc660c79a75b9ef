"""The projector survives losing its broker connection and its database connection, losing nothing.

The broker connection is closed from the broker's side (`rabbitmqctl close_connection`, only this test's
connection, found by its name and vhost); the database connection is terminated from PostgreSQL's side.
"""

from __future__ import annotations

import shutil
import subprocess
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from django.db import connection

from devkit.polling import eventually
from read_service.projections.models import AccountView
from tests.integration.read.conftest import AccountHistory


def _balance(history: AccountHistory) -> Decimal | None:
    return AccountView.objects.filter(account_id=history.account_id).values_list("balance", flat=True).first()


def _close_broker_connections(vhost: str, name: str) -> int:
    listing = subprocess.run(
        ["rabbitmqctl", "list_connections", "-q", "--no-table-headers", "pid", "vhost", "client_properties"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    pids = [
        line.split("\t")[0]
        for line in listing.splitlines()
        if line.split("\t")[1:2] == [vhost] and f'{{"connection_name","{name}"}}' in line
    ]
    for pid in pids:
        subprocess.run(["rabbitmqctl", "close_connection", pid, "test: connection lost"], check=True)
    return len(pids)


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl on this machine")
def test_reconnects_after_the_broker_closes_its_connection(
    broker, broker_url, publish, start_projector
) -> None:
    alice = AccountHistory()
    start_projector()
    publish(alice.opened(), alice.deposited("1.00"))
    eventually(lambda: _balance(alice) == Decimal("1.00"), timeout=10.0)

    assert _close_broker_connections(urlsplit(broker_url).path.lstrip("/"), "test-projector") == 1
    publish(alice.deposited("2.00"), alice.deposited("3.00"))

    eventually(lambda: _balance(alice) == Decimal("6.00"), timeout=20)


def test_keeps_the_batch_and_retries_after_losing_its_database_connection(
    broker, publish, start_projector
) -> None:
    alice = AccountHistory()
    start_projector()
    publish(alice.opened())
    eventually(lambda: _balance(alice) == Decimal("0.00"), timeout=10.0)

    with connection.cursor() as cursor:  # every other session of this role on this database: the projector's
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND usename = current_user AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 1
    publish(alice.deposited("4.00"), alice.withdrawn("1.50"))

    eventually(lambda: _balance(alice) == Decimal("2.50"), timeout=20)
    assert broker.message_count("read-service.projector.dlq") == 0
