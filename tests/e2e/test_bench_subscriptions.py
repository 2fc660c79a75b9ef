"""A benchmark of its own pauses, for its run, the subscriptions of the read cluster that nothing uses, and
resumes them after (each keeps its slot, so it goes on where it stopped). Shown on a pair of its own: a
scratch read database subscribed to the tests' write database, dropped at the end."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import psycopg2
import pytest

from bench.infra import Databases, other_subscriptions_paused
from devkit.processes import REPO
from devkit.replication import database_of, replication_of, superuser_sql, wait_until_streaming
from tests.e2e.conftest import setting

SCRATCH = "cqrs_read_pausecheck"


@pytest.fixture(scope="module")
def idle_pair() -> Iterator[str]:
    """The scratch read database's URL, its subscription streaming; nothing connected to it."""
    write_db, _ = database_of(setting("WRITE_DATABASE_URL"))
    read_url = setting("READ_DATABASE_URL")
    _, read_port = database_of(read_url)
    scratch_url = read_url.rsplit("/", 1)[0] + f"/{SCRATCH}"
    _drop(read_port)
    superuser_sql(read_port, "postgres", f'CREATE DATABASE "{SCRATCH}"')
    subprocess.run(
        ["bash", "deploy/local/replication.sh"],
        env={**os.environ, "REPLICATION_PAIRS": f"{write_db}:{SCRATCH}"},
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )
    wait_until_streaming(replication_of(scratch_url))
    try:
        yield scratch_url
    finally:
        _drop(read_port)


def _drop(read_port: int) -> None:
    """The subscription with its slot on the write cluster (else WAL is kept for it for ever), then the
    database."""
    exists = superuser_sql(read_port, "postgres", f"SELECT 1 FROM pg_database WHERE datname = '{SCRATCH}'")
    if exists:
        superuser_sql(read_port, SCRATCH, f'DROP SUBSCRIPTION IF EXISTS "{SCRATCH}_events"')
        superuser_sql(read_port, "postgres", f'DROP DATABASE "{SCRATCH}" WITH (FORCE)')


def _enabled(read_url: str) -> bool:
    pair = replication_of(read_url)
    found = superuser_sql(
        pair.read_port,
        pair.read_db,
        f"SELECT subenabled FROM pg_subscription WHERE subname = '{pair.subscription}'",
    )
    return found == "t"


def _run_on(read_url: str) -> Databases:
    """A benchmark run whose own read database is `read_url`."""
    return Databases(
        write_database_url=setting("WRITE_DATABASE_URL"),
        read_database_url=read_url,
        write_broker_url=setting("TEST_WRITE_RABBITMQ_URL"),
        read_broker_url=setting("TEST_READ_RABBITMQ_URL"),
    )


def test_an_idle_subscription_is_paused_for_the_run_and_resumed_after(idle_pair: str) -> None:
    with other_subscriptions_paused(_run_on(setting("READ_DATABASE_URL"))) as paused:
        assert f"{SCRATCH}.{SCRATCH}_events" in paused
        assert not _enabled(idle_pair)
    assert _enabled(idle_pair)
    wait_until_streaming(replication_of(idle_pair))


def test_a_subscription_in_use_is_left_running(idle_pair: str) -> None:
    reader = psycopg2.connect(idle_pair)  # someone reading that read model
    try:
        with other_subscriptions_paused(_run_on(setting("READ_DATABASE_URL"))) as paused:
            assert f"{SCRATCH}.{SCRATCH}_events" not in paused
            assert _enabled(idle_pair)
    finally:
        reader.close()


def test_the_runs_own_subscription_is_not_paused(idle_pair: str) -> None:
    with other_subscriptions_paused(_run_on(idle_pair)) as paused:
        assert f"{SCRATCH}.{SCRATCH}_events" not in paused
        assert _enabled(idle_pair)
