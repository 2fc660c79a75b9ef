"""Three projectors on the partitions: each account's events applied in order by one of them, nothing parked,
one active consumer per partition; a projector killed under load has its partitions taken over, and the read
side ends exactly equal to the write side."""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit
from uuid import UUID

import psycopg2
import pytest
import requests

from cqrs_common.messaging import DEFAULT_PARTITIONS, partition_of
from devkit import system_processes
from devkit.polling import eventually
from devkit.processes import DEVELOPMENT_SECRETS_ALLOWED, PYTHON, REPO, free_port
from tests.e2e.conftest import System

REPLICAS = 3
# Longer than three processes take to start side by side on a busy machine: every owner subscribes first.
STANDBY_DELAY = "6"


@pytest.fixture(scope="module")
def projectors(system: System) -> Iterator[list[str]]:
    """The system's projector replaced by projectors 0, 1 and 2 of 3, started at once as supervisord or a
    StatefulSet with parallel pod management starts them; their names."""
    assert system.processes.pop("projector").terminate() == 0
    names = ["projector", *(f"projector-{i}" for i in range(1, REPLICAS))]
    for ordinal, name in enumerate(names):
        port = system.projector_metrics_port if ordinal == 0 else free_port()
        settings = {
            "PROJECTOR_ORDINAL": str(ordinal),
            "PROJECTOR_REPLICAS": str(REPLICAS),
            "PROJECTOR_STANDBY_DELAY_SECONDS": STANDBY_DELAY,
        }
        system.processes[name] = system_processes.projector(name, system.backends, port, settings)
    for name in names:
        system.processes[name].wait_for_log(system_processes.PROJECTOR_READY_EVENT, timeout=60)
    # Every projector subscribed to every partition: its own ones and, as a standby, the others.
    eventually(
        lambda: all(len(c) == REPLICAS for c in _consumers(system).values()),
        timeout=60,
        what="three consumers on each partition",
    )
    yield names


def _consumers(system: System) -> dict[int, list[tuple[str, bool]]]:
    """Each partition's consumers as RabbitMQ lists them: (consumer tag, active)."""
    vhost = urlsplit(system.read_broker_url).path.lstrip("/")
    columns = ["queue_name", "consumer_tag", "active", "--formatter", "json"]
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "-p", vhost, "list_consumers", *columns],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found: dict[int, list[tuple[str, bool]]] = {p: [] for p in range(DEFAULT_PARTITIONS)}
    for row in json.loads(listed.stdout):
        partition = partition_of(row["queue_name"])
        if partition is not None:
            found[partition].append((row["consumer_tag"], row["active"] in (True, "true")))
    return found


def _active_consumer(system: System) -> dict[int, str]:
    """Each partition's one active consumer, by the connection its tag names (`projector-<ordinal>`)."""
    consumers = _consumers(system)
    active = {p: [tag for tag, is_active in c if is_active] for p, c in consumers.items()}
    assert all(len(tags) == 1 for tags in active.values()), consumers
    return {p: tags[0].partition(":")[0] for p, tags in active.items()}


def _active_by_metrics(system: System, names: list[str]) -> dict[int, list[str]]:
    """Which projectors say, on /metrics, that they are active on each partition."""
    return {
        p: [
            name
            for name in names
            if system.processes[name].running
            and system.metric(name, "cqrs_projector_partition_active", partition=str(p)) == 1
        ]
        for p in range(DEFAULT_PARTITIONS)
    }


class Load:
    """Concurrent clients sending deposits, withdrawals and transfers over the accounts until stopped."""

    def __init__(self, system: System, accounts: list[UUID], clients: int = 6) -> None:
        self.system = system
        self.accounts = accounts
        self.sent = 0
        self.unexpected: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(n,)) for n in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def wait_for(self, commands: int) -> None:
        eventually(lambda: self.sent >= commands, timeout=120, what=f"{commands} commands sent")

    def _client(self, seed: int) -> None:
        rng = random.Random(seed)
        with requests.Session() as http:
            while not self._stop.is_set():
                amount = f"{rng.randint(1, 500) / 100:.2f}"
                kind = rng.choice(["deposit", "withdraw", "transfer", "transfer"])
                if kind == "transfer":
                    source, target = rng.sample(self.accounts, 2)
                    body = {"from_account": str(source), "to_account": str(target), "amount": amount}
                    status = self.system.command(http, "/api/transfers", body).status_code
                else:
                    account = rng.choice(self.accounts)
                    status = self.system.command(
                        http, f"/api/accounts/{account}/{kind}", {"amount": amount}
                    ).status_code
                if status not in (200, 201, 409):
                    self.unexpected.append(status)
                self.sent += 1


def _open_accounts(system: System, http: requests.Session, count: int) -> list[UUID]:
    return [system.open_account(http, owner=f"partition-{i}", deposit="100.00") for i in range(count)]


def _assert_exactly_the_write_side(system: System, http: requests.Session) -> None:
    """Converged, every event applied once, no event waiting, and verify_read_models finds no drift."""
    system.wait_until_converged(http, timeout=120)
    write_events = _count(system.write_database_url, "SELECT count(*) FROM events")
    applied = _count(system.read_database_url, "SELECT count(DISTINCT event_id) FROM applied_events")
    rows = _count(system.read_database_url, "SELECT count(*) FROM applied_events")
    assert write_events == applied == rows
    assert _count(system.read_database_url, "SELECT count(*) FROM pending_events") == 0
    verified = subprocess.run(
        [PYTHON, "-m", "read_service", "verify_read_models", "--wait", "30"],
        env={**os.environ, **DEVELOPMENT_SECRETS_ALLOWED, "READ_DATABASE_URL": system.read_database_url},
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]


def _parked(system: System, names: list[str]) -> float:
    return sum(
        system.metric(name, "cqrs_events_parked_total", path=path)
        for name in names
        if system.processes[name].running
        for path in ("broker", "replication")
    )


@pytest.mark.slow
def test_three_projectors_apply_each_account_in_order_with_nothing_parked(
    system: System, projectors: list[str], http: requests.Session
) -> None:
    accounts = _open_accounts(system, http, 24)
    with Load(system, accounts) as load:
        load.wait_for(400)
    assert load.unexpected == []
    _assert_exactly_the_write_side(system, http)

    assert _parked(system, projectors) == 0
    # Every partition has one active consumer: its owner (partition p belongs to projector p % 3).
    active = _active_consumer(system)
    assert active == {p: f"projector-{p % REPLICAS}" for p in range(DEFAULT_PARTITIONS)}
    # ... and the projectors say the same on /metrics (each received from the partitions it is active on).
    by_metrics = _active_by_metrics(system, projectors)
    assert by_metrics == {p: [projectors[p % REPLICAS]] for p in range(DEFAULT_PARTITIONS)}
    for ordinal, name in enumerate(projectors):
        logged = {line["partition"] for line in system.processes[name].logged("partition_active")}
        assert logged == {p for p in range(DEFAULT_PARTITIONS) if p % REPLICAS == ordinal}


@pytest.mark.slow
def test_a_killed_projectors_partitions_are_taken_over_and_the_read_side_converges_exactly(
    system: System, projectors: list[str], http: requests.Session
) -> None:
    accounts = _open_accounts(system, http, 24)
    victim = projectors[1]  # owns partition 1
    assert _active_consumer(system)[1] == "projector-1"
    with Load(system, accounts) as load:
        load.wait_for(150)
        system.processes[victim].kill()  # SIGKILL: its unacknowledged deliveries go back to partition 1
        sent_at_kill = load.sent
        load.wait_for(sent_at_kill + 250)
    assert load.unexpected == []
    _assert_exactly_the_write_side(system, http)

    # Partition 1 has one active consumer again, one of the survivors, which says so on /metrics.
    active = _active_consumer(system)
    assert active[1] in ("projector-0", "projector-2")
    survivors = [name for name in projectors if name != victim]
    by_metrics = _active_by_metrics(system, survivors)
    assert all(len(names) == 1 for names in by_metrics.values()), by_metrics
    assert by_metrics[1] == [projectors[int(active[1].rpartition("-")[2])]]
    taker = system.processes[by_metrics[1][0]]
    assert any(line["partition"] == 1 for line in taker.logged("partition_active"))


def _count(url: str, sql: str) -> int:
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        count = cursor.fetchone()[0]
    connection.close()
    return count
