"""The run behind docs/observability/pipeline-dashboard.png: about six minutes of a real system with faults.

The system (live_system.py) runs on a private RabbitMQ node that this scenario may stop. Traffic is a client
sending deposits, withdrawals and transfers over 20 accounts at a steady 8 commands/s, with a burst at 30/s.
Then an unparseable message is published (dead-lettered by the projector), and the RabbitMQ node is stopped
for about 40 s while commands keep coming: the outbox holds them and the relay publishes them when the node
is back. The faults are returned as annotations, drawn on the picture as Grafana draws annotations.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import live_system
import requests

from devkit import messages
from devkit.private_rabbitmq import PrivateRabbitMQ

ACCOUNTS = 20
STEADY, BURST = 8.0, 30.0  # commands per second
TOKEN = {"Authorization": "Bearer dev-token"}
DEFAULT_WRITE_DATABASE_URL = "postgres://cqrs_write:cqrs_write@127.0.0.1:5433/cqrs_write"
DEFAULT_READ_DATABASE_URL = "postgres://cqrs_read:cqrs_read@127.0.0.1:5434/cqrs_read"


@dataclass(frozen=True)
class Annotation:
    """A moment (end None) or a span of the run, drawn on every time series as Grafana draws annotations."""

    start: float
    end: float | None
    text: str


@dataclass
class Run:
    prometheus: str
    started: float
    ended: float = 0.0
    annotations: list[Annotation] = field(default_factory=list)
    note: str = ""  # the machine it ran on: lags depend on it


class Traffic(threading.Thread):
    """A client sending commands at `rate` per second until stopped; the reads it makes wait for them."""

    def __init__(self, write_api: str, read_api: str) -> None:
        super().__init__(daemon=True, name="traffic")
        self.write_api, self.read_api = write_api, read_api
        self.rate = STEADY
        self.stopped = threading.Event()
        self.random = random.Random(7)
        self.session = requests.Session()
        self.session.headers.update(TOKEN)
        self.accounts: list[str] = []
        self.failures = 0

    def open_accounts(self) -> None:
        for index in range(ACCOUNTS):
            opened = self.session.post(f"{self.write_api}/api/accounts", json={"owner": f"demo-{index}"})
            opened.raise_for_status()
            account = opened.json()["account_id"]
            self.session.post(
                f"{self.write_api}/api/accounts/{account}/deposit", json={"amount": "1000.00"}
            ).raise_for_status()
            self.accounts.append(account)

    def run(self) -> None:
        due = time.monotonic()
        while not self.stopped.is_set():
            self._one_command()
            due = max(due + 1 / self.rate, time.monotonic() - 1)  # catches up a little, never a flood
            self.stopped.wait(max(0.0, due - time.monotonic()))

    def _one_command(self) -> None:
        pick = self.random.random()
        account, other = self.random.sample(self.accounts, 2)
        amount = f"{self.random.randint(1, 40)}.00"
        if pick < 0.45:
            answer = self._post(f"/api/accounts/{account}/deposit", {"amount": amount})
        elif pick < 0.65:
            answer = self._post(f"/api/accounts/{account}/withdraw", {"amount": amount})
        else:
            transfer = {"from_account": account, "to_account": other, "amount": amount}
            answer = self._post("/api/transfers", transfer)
        if answer is None or answer.status_code >= 500:
            self.failures += 1
        elif pick > 0.9 and answer.ok:  # now and then, read it back as a client of read-your-writes would
            token = answer.headers.get("X-Consistency-Token", "")
            self._get(f"/api/accounts/{account}", {"X-Consistency-Token": token})

    def _post(self, path: str, body: dict) -> requests.Response | None:
        try:
            return self.session.post(f"{self.write_api}{path}", json=body, timeout=10)
        except requests.RequestException:
            return None

    def _get(self, path: str, headers: dict[str, str]) -> None:
        with suppress(requests.RequestException):
            self.session.get(f"{self.read_api}{path}", params={"wait_ms": 500}, headers=headers, timeout=10)


def drive(system: live_system.LiveSystem, node: PrivateRabbitMQ, scrape_interval: float) -> Run:
    run = Run(system.url("prometheus"), started=time.time())
    traffic = Traffic(system.url("write-service"), system.url("read-service"))
    traffic.open_accounts()
    time.sleep(15)  # a quiet start, so the first rates have a baseline
    traffic.start()
    try:
        time.sleep(60)
        traffic.rate = BURST
        time.sleep(40)
        traffic.rate = STEADY
        time.sleep(20)
        run.annotations.append(Annotation(time.time(), None, "unparseable message published"))
        messages.publish(node.url, messages.message(b"{not json", "MoneyDeposited", "demo-poison"))
        time.sleep(30)
        outage = time.time()
        node.stop()
        time.sleep(30)
        node.start()
        run.annotations.append(Annotation(outage, time.time(), "RabbitMQ node stopped and restarted"))
        time.sleep(100)
    finally:
        traffic.stopped.set()
        traffic.join(timeout=15)
    time.sleep(3 * scrape_interval)  # the last scrapes and rule evaluations
    run.ended = time.time()
    run.note = f"Load average {os.getloadavg()[1]:.1f} over the last 5 minutes, {os.cpu_count()} CPUs."
    print(f"demo: {traffic.failures} commands failed with a 5xx or no answer")
    return run


@contextmanager
def running(scrape_interval: float) -> Iterator[Run]:
    """Starts a private RabbitMQ node and the system, drives the scenario, and yields while Prometheus still
    answers (the caller renders then); everything is stopped afterwards."""
    node = live_system.private_broker_with_metrics()
    node.start()
    try:
        environment = live_system.Environment(
            write_database_url=os.environ.get("WRITE_DATABASE_URL", DEFAULT_WRITE_DATABASE_URL),
            read_database_url=os.environ.get("READ_DATABASE_URL", DEFAULT_READ_DATABASE_URL),
            write_broker_url=node.url,
            read_broker_url=node.url,
            rabbitmq_metrics=node.metrics_address,
            vhost="/",
            scrape_interval=f"{scrape_interval:g}s",
        )
        home = Path(tempfile.mkdtemp(prefix="cqrs-dashboard-demo-"))
        print(f"demo: logs and Prometheus data in {home}")
        system = live_system.LiveSystem(home, environment).start()
        try:
            yield drive(system, node, scrape_interval)
        finally:
            system.stop()
    finally:
        node.destroy()
