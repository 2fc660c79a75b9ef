"""Fixtures of the end-to-end tests: the whole system started as a user starts it, and its clients.

Four real processes on free ports: write-service and read-service under gunicorn, `python -m write_service
relay` and `python -m read_service projector`. Tests talk to them as clients do (HTTP) and look underneath
only with psycopg2 (the write database's balances are the truth to compare with) and the messaging module.
No Django is configured in this process.

Environment (the Makefile's test-e2e target): WRITE_DATABASE_URL and READ_DATABASE_URL (databases created
by infra.sh; they are migrated and emptied when a system starts), TEST_WRITE_RABBITMQ_URL and
TEST_READ_RABBITMQ_URL (one vhost as each side's broker user sees it). A system is started per test module,
so a module that needs its own broker (a private node it can stop) starts a system of its own.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from uuid import UUID

import psycopg2
import pytest
import requests

from cqrs_common.messaging import DEAD_LETTER_QUEUE, Consumer
from devkit import system_processes
from devkit.api_client import ApiClient
from devkit.metrics import sample, scrape
from devkit.polling import eventually
from devkit.private_rabbitmq import PrivateRabbitMQ
from devkit.processes import DEVELOPMENT_SECRETS_ALLOWED, PYTHON, REPO, ServiceProcess, free_port
from devkit.replication import event_positions_kept, replica_reset

TOKEN = "e2e-token"
DEFAULTS = {
    "WRITE_DATABASE_URL": "postgres://cqrs_write:cqrs_write@127.0.0.1:5433/cqrs_write_test",
    "READ_DATABASE_URL": "postgres://cqrs_read:cqrs_read@127.0.0.1:5434/cqrs_read_test",
    "TEST_WRITE_RABBITMQ_URL": "amqp://write-service:write-service@127.0.0.1:5672/cqrs_test",
    "TEST_READ_RABBITMQ_URL": "amqp://read-service:read-service@127.0.0.1:5672/cqrs_test",
}


def setting(name: str) -> str:
    return os.environ.get(name, DEFAULTS[name])


@dataclass
class System(system_processes.RunningSystem, ApiClient):
    """The four processes of one running system (`processes`, by role), their addresses (`write_api`,
    `read_api`), and helpers to drive and inspect it."""

    write_database_url: str
    read_database_url: str
    token = TOKEN  # the API client's bearer token (not a field)
    write_broker_url: str
    read_broker_url: str
    relay_count: int = 0
    # Chosen before anything starts, so read-service's live view is told where the relay's and the projector's
    # /metrics are (a relay started again after a crash takes the same port).
    relay_metrics_port: int = field(default_factory=free_port)
    projector_metrics_port: int = field(default_factory=free_port)

    # ---------------------------------------------------------------------------------------- processes

    def prepare(self) -> None:
        """Migrated, empty databases, an empty replica of the events and empty queues: each module starts
        from nothing (stale replica rows would be filled into the fresh read model by the fallback path)."""

        def manage(service: str, url_var: str, url: str, *command: str) -> None:
            env = {**os.environ, **DEVELOPMENT_SECRETS_ALLOWED, url_var: url}
            subprocess.run(
                [PYTHON, "-m", service, *command, "-v", "0"], env=env, cwd=REPO, check=True, timeout=120
            )

        write = ("write_service", "WRITE_DATABASE_URL", self.write_database_url)
        read = ("read_service", "READ_DATABASE_URL", self.read_database_url)
        for side in (write, read):
            manage(*side, "migrate", "--no-input")
        with event_positions_kept(self.write_database_url):
            manage(*write, "flush", "--no-input")
        manage(*read, "flush", "--no-input")
        replica_reset(self.read_database_url)
        with Consumer(self.read_broker_url, connection_name="e2e-prepare") as consumer:
            consumer.purge_queues()
            consumer.purge(DEAD_LETTER_QUEUE)

    def start(self, web_env: Mapping[str, str] | None = None) -> System:
        """Prepares the databases, starts the four processes; `web_env` adds settings of the web services."""
        self.prepare()
        self.start_web_services(
            self.backends,
            {"CQRS_API_TOKENS": TOKEN, **self.lab_settings, **(web_env or {})},
            workers={"write-service": 4, "read-service": 3},
        )
        self.start_projector()
        self.start_relay()
        self.wait_until_web_ready(timeout=30)
        return self

    def stop(self) -> None:
        system_processes.stop(self.processes.values())

    @property
    def lab_settings(self) -> dict[str, str]:
        """The live view's settings (CONTRACT.md), as the packagings give them: where read-service finds the
        other processes' /metrics, where the browser finds the write API, and the page's origin, which the
        write API lets call it."""
        return {
            "LAB_WRITE_METRICS_URL": f"{self.write_api}/metrics",
            "LAB_RELAY_METRICS_URL": f"http://127.0.0.1:{self.relay_metrics_port}/metrics",
            "LAB_PROJECTOR_METRICS_URL": f"http://127.0.0.1:{self.projector_metrics_port}/metrics",
            "LAB_WRITE_API_URL": self.write_api,
            "LAB_ORIGINS": self.read_api,
        }

    @property
    def backends(self) -> system_processes.Backends:
        return system_processes.Backends(
            self.write_database_url, self.read_database_url, self.write_broker_url, self.read_broker_url
        )

    def start_relay(self) -> ServiceProcess:
        """Starts a relay (the old one, if any, must be stopped or killed first) and waits until it leads."""
        self.relay_count += 1
        relay = system_processes.relay(
            f"relay-{self.relay_count}",
            self.backends,
            self.relay_metrics_port,
            {"RELAY_MAX_BACKOFF_SECONDS": "1"},
        )
        self.processes["relay"] = relay
        relay.wait_for_log(system_processes.RELAY_READY_EVENT, timeout=30)
        return relay

    def start_projector(self, ordinal: int = 0, replicas: int = 1) -> ServiceProcess:
        """Starts projector `ordinal` of `replicas` and waits until it is connected. The first is `projector`
        on `projector_metrics_port`; others are `projector-<ordinal>` on ports of their own."""
        name = "projector" if ordinal == 0 else f"projector-{ordinal}"
        port = self.projector_metrics_port if ordinal == 0 else free_port()
        partitions = {"PROJECTOR_ORDINAL": str(ordinal), "PROJECTOR_REPLICAS": str(replicas)}
        projector = system_processes.projector(name, self.backends, port, partitions)
        self.processes[name] = projector
        projector.wait_for_log(system_processes.PROJECTOR_READY_EVENT, timeout=30)
        return projector

    def metric(self, process: str, name: str, **labels: str) -> float:
        """A sample from a relay's or projector's /metrics, summed over the label sets that include `labels`
        (0 when absent)."""
        port = self.processes[process].env[
            "RELAY_METRICS_PORT" if process == "relay" else "PROJECTOR_METRICS_PORT"
        ]
        exposition = scrape(f"http://127.0.0.1:{port}/metrics")
        assert exposition is not None, f"{process}'s /metrics does not answer"
        return sample(exposition, name, **labels) or 0.0

    # -------------------------------------------------------------------------------------- underneath

    def write_accounts(self) -> dict[UUID, tuple[Decimal, int]]:
        """The truth: balance and version of every account in the write database."""
        with psycopg2.connect(self.write_database_url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT id, balance, version FROM accounts")
            rows = cursor.fetchall()
        connection.close()
        return {UUID(str(account_id)): (balance, version) for account_id, balance, version in rows}

    def unpublished(self) -> int:
        with psycopg2.connect(self.write_database_url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM outbox_unpublished")
            count = cursor.fetchone()[0]
        connection.close()
        return count

    def converged(self, session: requests.Session, accounts: dict[UUID, tuple[Decimal, int]]) -> bool:
        """Whether the read side shows every given account at its write-side version."""
        for account_id, (_balance, version) in accounts.items():
            response = self.read_account(session, account_id)
            if response.status_code != 200 or response.json()["version"] < version:
                return False
        return True

    def wait_until_converged(self, session: requests.Session, timeout: float = 60.0) -> dict[UUID, tuple]:
        truth = self.write_accounts()
        eventually(
            lambda: self.converged(session, truth), timeout=timeout, interval=0.2, what="the read side"
        )
        return truth


def system_on(
    write_broker_url: str, read_broker_url: str, web_env: Mapping[str, str] | None = None
) -> Iterator[System]:
    system = System(
        write_database_url=setting("WRITE_DATABASE_URL"),
        read_database_url=setting("READ_DATABASE_URL"),
        write_broker_url=write_broker_url,
        read_broker_url=read_broker_url,
    )
    try:
        yield system.start(web_env)
    finally:
        system.stop()


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    """The system on the shared broker's test vhost, with each side's own broker user."""
    yield from system_on(setting("TEST_WRITE_RABBITMQ_URL"), setting("TEST_READ_RABBITMQ_URL"))


@pytest.fixture(scope="module")
def private_broker() -> Iterator[PrivateRabbitMQ]:
    node = PrivateRabbitMQ().start()
    yield node
    node.destroy()


@pytest.fixture(scope="module")
def system_on_private_broker(private_broker: PrivateRabbitMQ) -> Iterator[System]:
    """The system on a RabbitMQ node of its own, which a test may stop and start."""
    yield from system_on(private_broker.url, private_broker.url)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session
