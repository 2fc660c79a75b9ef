"""Fixtures of the chaos suite: the whole system, started as in tests/e2e, on servers the suite may break.

RabbitMQ is a private node (the shared broker is never stopped), and both databases live on private
PostgreSQL servers (the shared clusters serve other runs and are never stopped or restarted): the write
database on one with `wal_level=logical`, the read database on another, subscribed to it as the shared
read database is to its write database, through deploy/local/replication.sh. The read server's replication
workers restart after 200 ms instead of 5 s, so a scenario waits for the system, not for a timer.

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

from devkit.private_rabbitmq import PrivateRabbitMQ
from devkit.processes import PYTHON, REPO
from tests.chaos.harness import RESULTS, ChaosReadDatabase, ChaosWriteDatabase
from tests.e2e.conftest import System, http, private_broker  # noqa: F401 (fixtures reused)
from tests.support.private_postgres import PrivatePostgres

ACCOUNTS = 12


@pytest.fixture(scope="module")
def chaos_write_db() -> Iterator[ChaosWriteDatabase]:
    server = PrivatePostgres(
        "wal_level=logical",
        "max_replication_slots=10",
        "max_wal_senders=10",
        "max_slot_wal_keep_size=1GB",
        "max_connections=100",
    ).start()
    try:
        name = "cqrs_write_chaos"
        yield ChaosWriteDatabase(server, name, server.create_database(name, "cqrs_write", "cqrs_write"))
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def chaos_read_db(chaos_write_db: ChaosWriteDatabase) -> Iterator[ChaosReadDatabase]:
    server = PrivatePostgres("wal_retrieve_retry_interval=200ms", "max_connections=100").start()
    name = "cqrs_read_chaos"
    try:
        url = server.create_database(name, "cqrs_read", "cqrs_read")
        # The publication needs the events table: the write database is migrated before it is subscribed to.
        subprocess.run(
            [PYTHON, "-m", "write_service", "migrate", "--no-input", "-v", "0"],
            env={**os.environ, "WRITE_DATABASE_URL": chaos_write_db.url},
            check=True,
            timeout=120,
            cwd=REPO,
        )
        subprocess.run(
            ["bash", str(REPO / "deploy/local/replication.sh")],
            env={
                **os.environ,
                "REPLICATION_PAIRS": f"{chaos_write_db.name}:{name}",
                "WRITE_DB_PORT": str(chaos_write_db.server.port),
                "READ_DB_PORT": str(server.port),
            },
            check=True,
            capture_output=True,
            timeout=120,
            cwd=REPO,
        )
        yield ChaosReadDatabase(server, name, url)
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def chaos_system(
    private_broker: PrivateRabbitMQ,  # noqa: F811
    chaos_write_db: ChaosWriteDatabase,
    chaos_read_db: ChaosReadDatabase,
) -> Iterator[System]:
    system = System(
        write_database_url=chaos_write_db.url,
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
