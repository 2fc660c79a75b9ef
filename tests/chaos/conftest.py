"""Fixtures of the chaos suite: the whole system, started as in tests/e2e, on servers the suite may break.

RabbitMQ is a private node (the shared broker is never stopped) and the read database lives on a private
PostgreSQL server (the shared read cluster serves other runs and is never restarted), subscribed to the
test write database like the shared read database is, through deploy/local/replication.sh; its replication
workers restart after 200 ms instead of 5 s, so a scenario waits for the system, not for a timer. The write
database is the shared test database (the scenarios never break it).

The scenarios' traffic and checks are in harness.py; every scenario's numbers are printed in the terminal
summary.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
import requests

from tests.chaos.harness import RESULTS, ChaosReadDatabase
from tests.e2e.conftest import System, http, private_broker, setting  # noqa: F401 (fixtures reused)
from tests.support.private_postgres import PrivatePostgres
from tests.support.private_rabbitmq import PrivateRabbitMQ
from tests.support.processes import REPO
from tests.support.replication import database_of, superuser_sql

ACCOUNTS = 12


@pytest.fixture(scope="module")
def chaos_read_db() -> Iterator[ChaosReadDatabase]:
    write_db, write_port = database_of(setting("WRITE_DATABASE_URL"))
    # Named after the write database, so runs on different write databases never share a slot name.
    name = f"cqrs_read_chaos_{write_db.removeprefix('cqrs_write_')}"
    # A slot left by a run of this write database that died before its teardown would refuse the subscription.
    superuser_sql(
        write_port,
        write_db,
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
        f"WHERE slot_name = '{name}_events' AND NOT active",
    )
    server = PrivatePostgres("wal_retrieve_retry_interval=200ms", "max_connections=100").start()
    try:
        url = server.create_database(name, "cqrs_read", "cqrs_read")
        subprocess.run(
            ["bash", str(REPO / "deploy/local/replication.sh")],
            env={
                **os.environ,
                "REPLICATION_PAIRS": f"{write_db}:{name}",
                "WRITE_DB_PORT": str(write_port),
                "READ_DB_PORT": str(server.port),
            },
            check=True,
            capture_output=True,
            timeout=120,
            cwd=REPO,
        )
        yield ChaosReadDatabase(server, name, url)
    finally:
        # Dropping the subscription drops its slot on the shared write cluster, which would keep WAL else.
        try:
            server.sql(name, f'DROP SUBSCRIPTION IF EXISTS "{name}_events"')
        finally:
            server.destroy()


@pytest.fixture(scope="module")
def chaos_system(private_broker: PrivateRabbitMQ, chaos_read_db: ChaosReadDatabase) -> Iterator[System]:  # noqa: F811
    system = System(
        write_database_url=setting("WRITE_DATABASE_URL"),
        read_database_url=chaos_read_db.url,
        write_broker_url=private_broker.url,
        read_broker_url=private_broker.url,
    )
    try:
        yield system.start()
    finally:
        system.stop()


@pytest.fixture(scope="module")
def accounts(chaos_system: System) -> list[UUID]:
    with requests.Session() as session:
        opened = [
            chaos_system.open_account(session, owner=f"chaos-{i}", deposit="500.00") for i in range(ACCOUNTS)
        ]
        chaos_system.wait_until_converged(session)
    return opened


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if RESULTS:
        terminalreporter.write_sep("-", "chaos: observed lag and recovery per scenario")
        for line in RESULTS:
            terminalreporter.write_line(line)
