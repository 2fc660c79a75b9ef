"""The Compose tier: the whole system in containers as `make up` starts it, tested over published ports.

`make test-compose` first runs `deploy/local/compose.sh prepare` (a Docker engine installed and started when
absent, the images chosen and built, local ones from Debian's packages where no registry answers), then these
tests. One Compose project (`cqrs-lab-test`) is started for the whole session on host ports of its own, so
a native `make run` or a user's `make up` on the usual ports is never touched, and it is removed with its
volumes at the end, whether the tests passed or not. Tests talk to it as a user does (HTTP on 127.0.0.1), act
on it with Compose's own commands (stop, start, ...) and look underneath only through the write database's
published port (its balances are the truth to compare with).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from uuid import UUID

import psycopg2
import pytest
import requests

from devkit.api_client import ApiClient
from devkit.metrics import sample
from devkit.processes import REPO

TOKEN = "dev-token"
# Host ports of the test project: none of the native run's (CONTRACT.md) nor of the machine's own servers.
PORTS = {
    "WRITE_SERVICE_HOST_PORT": 18001,
    "READ_SERVICE_HOST_PORT": 18002,
    "RELAY_METRICS_HOST_PORT": 18101,
    "PROJECTOR_METRICS_HOST_PORTS": 18102,
    "REPORTING_METRICS_HOST_PORT": 18103,
    "WRITE_DB_HOST_PORT": 18433,
    "READ_DB_HOST_PORT": 18434,
    "EVENT_STORE_HOST_PORT": 18435,
    "RABBITMQ_AMQP_HOST_PORT": 18673,
    "RABBITMQ_MANAGEMENT_HOST_PORT": 18672,
    "PROMETHEUS_HOST_PORT": 18090,
    "GRAFANA_HOST_PORT": 18300,
}
PROJECT = os.environ.get("COMPOSE_PROJECT_NAME", "cqrs-lab-test")


class ComposeSystem(ApiClient):
    """The running Compose project: its URLs, Compose commands on it, and the write side's truth."""

    token = TOKEN

    def __init__(self) -> None:
        self.env = {**os.environ, "COMPOSE_PROJECT_NAME": PROJECT, **{k: str(v) for k, v in PORTS.items()}}
        # A user's .env would move the ports under the tests' feet: the tier runs with the defaults only.
        self.env.pop("COMPOSE_FILE", None)
        self.write_api = f"http://127.0.0.1:{PORTS['WRITE_SERVICE_HOST_PORT']}"
        self.read_api = f"http://127.0.0.1:{PORTS['READ_SERVICE_HOST_PORT']}"
        self.prometheus = f"http://127.0.0.1:{PORTS['PROMETHEUS_HOST_PORT']}"
        self.write_database_url = (
            f"postgres://cqrs_write:cqrs_write@127.0.0.1:{PORTS['WRITE_DB_HOST_PORT']}/cqrs_write"
        )
        self.read_database_url = (
            f"postgres://cqrs_read:cqrs_read@127.0.0.1:{PORTS['READ_DB_HOST_PORT']}/cqrs_read"
        )
        self.relay_url = f"http://127.0.0.1:{PORTS['RELAY_METRICS_HOST_PORT']}"
        self.projector_url = f"http://127.0.0.1:{PORTS['PROJECTOR_METRICS_HOST_PORTS']}"
        self.reporting_url = f"http://127.0.0.1:{PORTS['REPORTING_METRICS_HOST_PORT']}"

    def compose(
        self, *args: str, timeout: float = 600, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """`deploy/local/compose.sh ARGS` on the test project (Compose v2 or v1, the images `up` chose)."""
        result = subprocess.run(
            ["bash", "deploy/local/compose.sh", *args],
            cwd=REPO,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert result.returncode == 0, f"compose.sh {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).stdout.strip()

    def inspect(self, service: str, template: str) -> str:
        result = subprocess.run(
            ["docker", "inspect", "--format", template, self.container(service)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return result.stdout.strip()

    def applied(self, path: str) -> float:
        """cqrs_events_applied_total summed over event types, for one path (broker or replication)."""
        page = requests.get(f"{self.projector_url}/metrics", timeout=10)
        return sample(page.text, "cqrs_events_applied_total", path=path) or 0.0

    # -------------------------------------------------------------------------------------- underneath

    def write_accounts(self) -> dict[UUID, tuple[Decimal, int]]:
        """The truth: balance and version of every account in the write database (its published port)."""
        connection = psycopg2.connect(self.write_database_url)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT id, balance, version FROM accounts")
                rows = cursor.fetchall()
        finally:
            connection.close()
        return {UUID(str(account_id)): (balance, version) for account_id, balance, version in rows}

    def unpublished(self) -> int:
        return self._count("SELECT count(*) FROM outbox_unpublished")

    def count_events(self) -> int:
        return self._count("SELECT count(*) FROM events")

    def _count(self, query: str) -> int:
        connection = psycopg2.connect(self.write_database_url)
        try:
            with connection.cursor() as cursor:
                cursor.execute(query)
                return cursor.fetchone()[0]
        finally:
            connection.close()

    def assert_read_side_exact(self, http: requests.Session, timeout: float = 60.0) -> dict[UUID, tuple]:
        """Every account of the write side shown by the read side at its version, with its exact balance."""
        truth = self.write_accounts()
        for account_id, (balance, version) in truth.items():
            response = self.read_account(http, account_id, min_version=version, wait_ms=int(timeout * 500))
            assert response.status_code == 200, (account_id, response.status_code, response.text)
            shown = response.json()
            assert (Decimal(shown["balance"]), shown["version"]) == (balance, version), account_id
        return truth


@pytest.fixture(scope="session")
def system() -> Iterator[ComposeSystem]:
    system = ComposeSystem()
    system.compose("down", check=False)  # what an interrupted earlier run may have left
    try:
        system.compose("up", timeout=900)
        yield system
    finally:
        logs = system.compose("logs", "--no-color", "--tail=200", check=False)
        (REPO / "var").mkdir(exist_ok=True)
        (REPO / "var" / f"{PROJECT}.log").write_text(logs.stdout + logs.stderr)
        system.compose("down", check=False)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session
