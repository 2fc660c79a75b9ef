"""What every experiment shares: where the running system is, how to talk to it, and how to report.

An experiment drives a system that is already running (`make run`, or the processes an end-to-end test
starts) as a client would: HTTP to the two APIs, SQL to look underneath, the projector's maintenance commands
as an operator runs them. It finds the system through these variables, whose defaults are the native run's:

| variable | default |
|---|---|
| LAB_WRITE_API / LAB_READ_API | http://127.0.0.1:8001 / http://127.0.0.1:8002 |
| LAB_API_TOKEN | dev-token |
| WRITE_DATABASE_URL / READ_DATABASE_URL | the services' own defaults (cqrs_common.config) |
| LAB_RABBITMQ_URL | the read side's broker URL (its user may publish to cqrs.events and read the DLQ) |
| LAB_REPORTING_RABBITMQ_URL | the reporting subscriber's broker URL (its own user) |
| LAB_RABBITMQ_NODE | unset: rabbitmqctl's default node (the broker-outage experiment stops it) |
| LAB_RELAY_METRICS / LAB_PROJECTOR_METRICS | http://127.0.0.1:9101/metrics / http://127.0.0.1:9102/metrics |
| LAB_SYSTEM | native; `compose`: the system `make up` runs (see below) |

With LAB_SYSTEM=compose the defaults are the Compose project's host ports (the *_HOST_PORT variables of
.env.example, as `make up` publishes them) and its development passwords, and the broker is stopped and
started with Compose (`deploy/local/compose.sh stop rabbitmq`) instead of rabbitmqctl; COMPOSE_PROJECT_NAME
names the project (cqrs-lab).

An experiment prints what it does, what it observed in numbers, the Grafana panels that show it, and last a
`result: {...}` line with the same numbers as JSON, which its test compares with the databases and the APIs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg2
import requests

from cqrs_common.config import (
    DEFAULT_READ_DATABASE_URL,
    DEFAULT_READ_RABBITMQ_URL,
    DEFAULT_REPORTING_RABBITMQ_URL,
    DEFAULT_WRITE_DATABASE_URL,
)
from devkit.api_client import ApiClient
from devkit.metrics import sample, scrape

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = REPO / "observability" / "grafana" / "dashboards"
# The dashboards' titles, as an experiment names their panels (Report.panels checks each title).
API = "CQRS read/write API"
PIPELINE = "CQRS pipeline"


@dataclass(frozen=True)
class Lab(ApiClient):
    """The running system's addresses, from the environment; its API calls are devkit's ApiClient's."""

    write_api: str
    read_api: str
    token: str
    write_database_url: str
    read_database_url: str
    rabbitmq_url: str
    rabbitmq_node: str | None
    reporting_rabbitmq_url: str
    relay_metrics: str
    projector_metrics: str
    # The Compose project's name when the system is the one `make up` runs; None for the native run.
    compose_project: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Lab:
        compose = env.get("LAB_SYSTEM", "native") == "compose"
        defaults = _compose_defaults(env) if compose else _NATIVE_DEFAULTS
        return cls(
            write_api=env.get("LAB_WRITE_API", defaults["write_api"]).rstrip("/"),
            read_api=env.get("LAB_READ_API", defaults["read_api"]).rstrip("/"),
            token=env.get("LAB_API_TOKEN", "dev-token"),
            write_database_url=env.get("WRITE_DATABASE_URL", defaults["write_database_url"]),
            read_database_url=env.get("READ_DATABASE_URL", defaults["read_database_url"]),
            rabbitmq_url=env.get("LAB_RABBITMQ_URL", defaults["rabbitmq_url"]),
            rabbitmq_node=env.get("LAB_RABBITMQ_NODE") or None,
            reporting_rabbitmq_url=env.get("LAB_REPORTING_RABBITMQ_URL", defaults["reporting_rabbitmq_url"]),
            relay_metrics=env.get("LAB_RELAY_METRICS", defaults["relay_metrics"]),
            projector_metrics=env.get("LAB_PROJECTOR_METRICS", defaults["projector_metrics"]),
            compose_project=env.get("COMPOSE_PROJECT_NAME", "cqrs-lab") if compose else None,
        )

    # ------------------------------------------------------------------------------------ the broker

    def broker_control(self) -> str:
        """How stop_broker and start_broker act, in words for the experiment's warning."""
        if self.compose_project:
            return f"`docker compose stop rabbitmq` / `start rabbitmq` (project {self.compose_project})"
        node = self.rabbitmq_node or "this machine's default node; LAB_RABBITMQ_NODE names another"
        return f"`rabbitmqctl stop_app` / `start_app` ({node})"

    def stop_broker(self) -> None:
        self._broker("stop", "stop_app")

    def start_broker(self) -> None:
        self._broker("start", "start_app")

    def _broker(self, compose_action: str, rabbitmqctl_action: str) -> None:
        if self.compose_project:
            self.compose(compose_action, "rabbitmq")
            return
        node = ["-n", self.rabbitmq_node] if self.rabbitmq_node else []
        subprocess.run(
            ["rabbitmqctl", "-q", *node, rabbitmqctl_action],
            check=True,
            timeout=120,
            stdout=subprocess.DEVNULL,
        )

    def compose(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A Compose command on the project (deploy/local/compose.sh: Compose v2 or v1, as `make up`)."""
        assert self.compose_project, "not a Compose system (LAB_SYSTEM=compose)"
        return subprocess.run(
            ["bash", "deploy/local/compose.sh", *args],
            cwd=REPO,
            env={**os.environ, "COMPOSE_PROJECT_NAME": self.compose_project},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )

    def client(self) -> Client:
        """A client on a session of its own; `with lab.client() as client:` closes it."""
        return Client(self)

    # --------------------------------------------------------------------------------- underneath

    def write_rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple]:
        return _rows(self.write_database_url, sql, params)

    def read_rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple]:
        return _rows(self.read_database_url, sql, params)

    def read_service_command(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Runs `python -m read_service <args>` as an operator would, against this system's read side."""
        return subprocess.run(
            [sys.executable, "-m", "read_service", *args],
            cwd=REPO,
            env={
                **os.environ,
                "READ_DATABASE_URL": self.read_database_url,
                "RABBITMQ_URL": self.rabbitmq_url,
                "LOG_FORMAT": "json",
            },
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def metric(self, url: str, name: str, **labels: str) -> float | None:
        """The sum of a metric's samples matching `labels` on a /metrics page; None when unreachable."""
        exposition = scrape(url, timeout=3)
        return None if exposition is None else sample(exposition, name, **labels) or 0.0

    @classmethod
    def running(cls) -> Lab:
        """The system of the environment, once it answers (the experiment stops with a hint if not)."""
        lab = cls.from_env()
        lab.require_running()
        return lab

    def require_running(self) -> None:
        """Stops the experiment with a hint when the system does not answer."""
        for api in (self.write_api, self.read_api):
            try:
                requests.get(f"{api}/readyz", timeout=3).raise_for_status()
            except requests.RequestException as exc:
                raise SystemExit(
                    f"{api} does not answer ({exc.__class__.__name__}). Start the system first with "
                    "`make run` in another terminal, or point LAB_WRITE_API / LAB_READ_API at it."
                ) from None


_NATIVE_DEFAULTS = {
    "write_api": "http://127.0.0.1:8001",
    "read_api": "http://127.0.0.1:8002",
    "write_database_url": DEFAULT_WRITE_DATABASE_URL,
    "read_database_url": DEFAULT_READ_DATABASE_URL,
    "rabbitmq_url": DEFAULT_READ_RABBITMQ_URL,
    "reporting_rabbitmq_url": DEFAULT_REPORTING_RABBITMQ_URL,
    "relay_metrics": "http://127.0.0.1:9101/metrics",
    "projector_metrics": "http://127.0.0.1:9102/metrics",
}


def _compose_defaults(env: Mapping[str, str]) -> dict[str, str]:
    """The addresses `make up` publishes on 127.0.0.1, with the Compose file's defaults (.env.example)."""

    def port(name: str, default: int) -> str:
        if f"{name}_HOST_PORTS" in env:  # a range: its first port
            return env[f"{name}_HOST_PORTS"].partition("-")[0]
        return env.get(f"{name}_HOST_PORT", str(default))

    def secret(name: str, default: str) -> str:
        return env.get(name, default)

    host = "127.0.0.1"
    write_db = f"{secret('WRITE_DB_PASSWORD', 'cqrs_write')}@{host}:{port('WRITE_DB', 15433)}"
    read_db = f"{secret('READ_DB_PASSWORD', 'cqrs_read')}@{host}:{port('READ_DB', 15434)}"
    return {
        "write_api": f"http://{host}:{port('WRITE_SERVICE', 8001)}",
        "read_api": f"http://{host}:{port('READ_SERVICE', 8002)}",
        "write_database_url": f"postgres://cqrs_write:{write_db}/cqrs_write",
        "read_database_url": f"postgres://cqrs_read:{read_db}/cqrs_read",
        "rabbitmq_url": (
            f"amqp://read-service:{secret('RABBITMQ_READ_PASSWORD', 'read-service')}"
            f"@{host}:{port('RABBITMQ_AMQP', 5673)}/cqrs"
        ),
        "reporting_rabbitmq_url": (
            f"amqp://reporting:{secret('RABBITMQ_REPORTING_PASSWORD', 'reporting')}"
            f"@{host}:{port('RABBITMQ_AMQP', 5673)}/cqrs"
        ),
        "relay_metrics": f"http://{host}:{port('RELAY_METRICS', 9101)}/metrics",
        # The first projector's (several take a port each from a range)
        "projector_metrics": f"http://{host}:{port('PROJECTOR_METRICS', 9102)}/metrics",
    }


def _rows(url: str, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> list[tuple]:
    connection = psycopg2.connect(url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


class Client:
    """One client of both APIs: the lab's addresses and token (devkit's ApiClient) on a session of its own."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.session = requests.Session()

    def command(self, path: str, body: Mapping[str, Any], headers: Mapping[str, str] | None = None):
        return self.lab.command(self.session, path, dict(body), **(headers or {}))

    def open_account(self, owner: str, deposit: str | None = None) -> tuple[UUID, int]:
        """Opens an account (and deposits) through the API; returns its id and version."""
        return self.lab.opened(self.session, owner, deposit)

    def read_account(self, account_id: UUID, **params: Any) -> requests.Response:
        return self.lab.read_account(self.session, account_id, **params)

    def read_fresh(self, account_id: UUID, version: int, wait_ms: int = 10000) -> dict[str, Any]:
        """The account once its projection reached `version` (read-your-writes); raises if it did not."""
        response = self.read_account(account_id, min_version=version, wait_ms=wait_ms)
        response.raise_for_status()
        return response.json()

    def projection(self) -> dict[str, Any]:
        return self.lab.projection(self.session)

    def statement(self, account_id: UUID) -> list[dict[str, Any]]:
        return self.lab.statement(self.session, account_id)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------ output


def panel_titles() -> dict[str, set[str]]:
    """Every panel title of every provisioned dashboard, by dashboard title."""
    titles: dict[str, set[str]] = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        found: set[str] = set()
        stack = list(dashboard.get("panels", []))
        while stack:
            panel = stack.pop()
            if panel.get("type") != "row":
                found.add(panel.get("title", ""))
            stack += panel.get("panels", [])
        titles[dashboard["title"]] = found
    return titles


class Report:
    """What an experiment prints: a title, numbered steps, observations, panels, and the result line."""

    def __init__(self, name: str, doc: str) -> None:
        """`doc`: the experiment module's docstring, whose first paragraph is its one-line summary and the
        rest its purpose, printed under the title."""
        self.name = name
        self._step = 0
        print(f"== Experiment: {name}")
        print(_indent(doc.split("\n\n", 1)[1]))
        print()

    def step(self, text: str) -> None:
        self._step += 1
        print(f"[{self._step}] {text}", flush=True)

    def detail(self, text: str) -> None:
        print(_indent(text), flush=True)

    def observed(self, lines: Iterable[tuple[str, Any]]) -> None:
        lines = list(lines)
        width = max(len(label) for label, _ in lines)
        print("\nObserved:")
        for label, value in lines:
            print(f"    {label.ljust(width)}  {value}")

    def explain(self, text: str) -> None:
        print()
        print(_indent(text, prefix="  "))

    def panels(self, wanted: Iterable[tuple[str, str]], note: str | None = None) -> None:
        """Names Grafana panels; refuses a title the dashboards do not have, so the text cannot drift."""
        titles = panel_titles()
        print(
            "\nWhere to see it: Grafana (http://localhost:3000 with Compose or kind); natively, Prometheus"
            "\n(http://127.0.0.1:9090) has the same series, the panel's query is in its JSON."
        )
        for dashboard, title in wanted:
            if title not in titles.get(dashboard, set()):
                raise LookupError(f"dashboard {dashboard!r} has no panel {title!r}")
            print(f'    dashboard "{dashboard}", panel "{title}"')
        if note:
            print(_indent(note))

    def result(self, numbers: Mapping[str, Any]) -> None:
        print()
        print("result: " + json.dumps(numbers, sort_keys=True, default=str), flush=True)


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line if line else "" for line in text.strip("\n").splitlines())


# ------------------------------------------------------------------------------------------------ helpers


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by the nearest-rank method; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
