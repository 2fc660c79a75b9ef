"""The relay watches the read side's replication slot on the write database: the WAL it keeps (the slot keeps
every change its subscriber has not confirmed) and its loss (past max_slot_wal_keep_size PostgreSQL
invalidates it, and the subscription can never continue).

The write database is a private server keeping at most 1 MB of WAL for a slot, so a slot nobody reads is lost
after a few segment switches and a checkpoint; the relay runs as `python -m write_service relay` against it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from devkit.metrics import sample_at
from devkit.polling import eventually
from devkit.processes import REPO, free_port, relay_process
from tests.support.private_postgres import PrivatePostgres

pytestmark = pytest.mark.slow

SLOT = "cqrs_read_events"


@pytest.fixture
def write_db() -> Iterator[tuple[PrivatePostgres, str]]:
    server = PrivatePostgres("wal_level=logical", "max_slot_wal_keep_size=1MB").start()
    try:
        url = server.create_database("cqrs_write", "cqrs_write", "cqrs_write")
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "write_service.settings", "WRITE_DATABASE_URL": url}
        migrated = subprocess.run(
            [sys.executable, "-m", "write_service", "migrate", "--no-input", "-v0"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert migrated.returncode == 0, migrated.stderr[-3000:]
        yield server, url
    finally:
        server.destroy()


def _retained(port: int) -> float | None:
    return sample_at(f"http://127.0.0.1:{port}/metrics", "cqrs_replication_slot_retained_bytes", slot=SLOT)


def _lose_the_slot(server: PrivatePostgres) -> None:
    """Writes, switches WAL segments and checkpoints until PostgreSQL invalidates the unread slot."""
    server.sql("cqrs_write", "CREATE TABLE filler (pad text)")
    for _ in range(20):
        server.sql(
            "cqrs_write",
            "INSERT INTO filler SELECT repeat(md5(random()::text), 30) FROM generate_series(1, 500)",
            "SELECT pg_switch_wal()",
            "CHECKPOINT",
        )
        if (
            server.sql(
                "cqrs_write", f"SELECT wal_status FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
            )
            == "lost"
        ):
            return
    raise AssertionError("the slot was never invalidated")


def test_the_relay_shows_the_wal_a_slot_keeps_and_logs_its_loss_once(
    write_db: tuple[PrivatePostgres, str], write_broker_url: str
) -> None:
    server, url = write_db
    server.sql("cqrs_write", f"SELECT pg_create_logical_replication_slot('{SLOT}', 'pgoutput')")
    port = free_port()
    relay = relay_process(
        "relay-slot",
        {"WRITE_DATABASE_URL": url, "RABBITMQ_URL": write_broker_url, "RELAY_METRICS_PORT": str(port)},
    ).start()
    try:
        relay.wait_for_log("relay_leadership_acquired", timeout=30)
        server.sql("cqrs_write", "CREATE TABLE warmup AS SELECT generate_series(1, 1000) AS n")
        eventually(lambda: (_retained(port) or 0) > 0, timeout=10, what="the slot's retained WAL")

        _lose_the_slot(server)

        lost = relay.wait_for_log("replication_slot_lost", timeout=15)
        assert lost["slot"] == SLOT and lost["level"] == "error"
        eventually(lambda: _retained(port) == 0, timeout=10, what="a lost slot to keep nothing")
        time.sleep(2.5)  # the gauges are refreshed every second: the loss is still said only once
        assert len(relay.logged("replication_slot_lost")) == 1
    finally:
        relay.terminate()
