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
| LAB_RABBITMQ_NODE | unset: rabbitmqctl's default node (the broker-outage experiment stops it) |
| LAB_RELAY_METRICS / LAB_PROJECTOR_METRICS | http://127.0.0.1:9101/metrics / http://127.0.0.1:9102/metrics |

An experiment prints what it does, what it observed in numbers, the Grafana panels that show it, and last a
`result: {...}` line with the same numbers as JSON, which its test compares with the databases and the APIs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg2
import requests

from cqrs_common.config import (
    DEFAULT_READ_DATABASE_URL,
    DEFAULT_READ_RABBITMQ_URL,
    DEFAULT_WRITE_DATABASE_URL,
)

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = REPO / "observability" / "grafana" / "dashboards"


@dataclass(frozen=True)
class Lab:
    """The running system's addresses, from the environment."""

    write_api: str
    read_api: str
    token: str
    write_database_url: str
    read_database_url: str
    rabbitmq_url: str
    rabbitmq_node: str | None
    relay_metrics: str
    projector_metrics: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Lab:
        return cls(
            write_api=env.get("LAB_WRITE_API", "http://127.0.0.1:8001").rstrip("/"),
            read_api=env.get("LAB_READ_API", "http://127.0.0.1:8002").rstrip("/"),
            token=env.get("LAB_API_TOKEN", "dev-token"),
            write_database_url=env.get("WRITE_DATABASE_URL", DEFAULT_WRITE_DATABASE_URL),
            read_database_url=env.get("READ_DATABASE_URL", DEFAULT_READ_DATABASE_URL),
            rabbitmq_url=env.get("LAB_RABBITMQ_URL", DEFAULT_READ_RABBITMQ_URL),
            rabbitmq_node=env.get("LAB_RABBITMQ_NODE") or None,
            relay_metrics=env.get("LAB_RELAY_METRICS", "http://127.0.0.1:9101/metrics"),
            projector_metrics=env.get("LAB_PROJECTOR_METRICS", "http://127.0.0.1:9102/metrics"),
        )

    def client(self) -> Client:
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

    def metric(self, url: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """The sum of a metric's samples matching `labels` on a /metrics page; None when unreachable."""
        try:
            text = requests.get(url, timeout=3).text
        except requests.RequestException:
            return None
        return metric_from_text(text, name, labels or {})

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


def _rows(url: str, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> list[tuple]:
    connection = psycopg2.connect(url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


def metric_from_text(text: str, name: str, labels: Mapping[str, str]) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, label_text = series.partition("{")
        if metric != name:
            continue
        found = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part)
        if all(found.get(key, "").strip('"') == wanted for key, wanted in labels.items()):
            total += float(value)
    return total


class Client:
    """HTTP to both APIs as a client sends it, with the bearer token on commands."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.session = requests.Session()

    def command(self, path: str, body: Mapping[str, Any], headers: Mapping[str, str] | None = None):
        return self.session.post(
            f"{self.lab.write_api}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.lab.token}", **(headers or {})},
            timeout=30,
        )

    def open_account(self, owner: str, deposit: str | None = None) -> tuple[UUID, int]:
        """Opens an account (and deposits) through the API; returns its id and version."""
        opened = self.command("/api/accounts", {"owner": owner, "currency": "EUR"})
        opened.raise_for_status()
        account_id, version = UUID(opened.json()["account_id"]), opened.json()["version"]
        if deposit is not None:
            deposited = self.command(f"/api/accounts/{account_id}/deposit", {"amount": deposit})
            deposited.raise_for_status()
            version = deposited.json()["version"]
        return account_id, version

    def read_account(self, account_id: UUID, **params: Any) -> requests.Response:
        return self.session.get(f"{self.lab.read_api}/api/accounts/{account_id}", params=params, timeout=40)

    def read_fresh(self, account_id: UUID, version: int, wait_ms: int = 10000) -> dict[str, Any]:
        """The account once its projection reached `version` (read-your-writes); raises if it did not."""
        response = self.read_account(account_id, min_version=version, wait_ms=wait_ms)
        response.raise_for_status()
        return response.json()

    def projection(self) -> dict[str, Any]:
        response = self.session.get(f"{self.lab.read_api}/api/projection", timeout=10)
        response.raise_for_status()
        return response.json()

    def statement(self, account_id: UUID) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        url: str | None = f"{self.lab.read_api}/api/accounts/{account_id}/transactions"
        while url:
            page = self.session.get(url, timeout=10)
            page.raise_for_status()
            rows += page.json()["results"]
            url = page.json()["next"]
        return rows

    def close(self) -> None:
        self.session.close()


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

    def __init__(self, name: str, purpose: str) -> None:
        self.name = name
        self._step = 0
        print(f"== Experiment: {name}")
        print(_indent(purpose))
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


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Polls `condition` until truthy and returns its value; returns None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value or None
        time.sleep(interval)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by the nearest-rank method; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
