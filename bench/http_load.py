"""Load through HTTP: a paced open-loop client (a fixed rate of commands, whatever the answers take) and wrk
(as many requests as the server answers, for requests per second and latency)."""

from __future__ import annotations

import http.client
import json
import queue
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import requests

from bench.system import TOKEN

WORKERS = 64  # client threads: at 200/s, answers may take up to 300 ms before the schedule slips
TRANSFER_SHARE = 0.2  # of the paced commands; the rest are deposits
OPENING_DEPOSIT = "1000000.00"


def open_accounts(write_api: str, count: int, owner: str) -> list[UUID]:
    """Accounts opened and funded through the API (two commands each)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    accounts = []
    with requests.Session() as session:
        for _ in range(count):
            opened = session.post(
                f"{write_api}/api/accounts", json={"owner": owner}, headers=headers, timeout=30
            )
            opened.raise_for_status()
            account_id = UUID(opened.json()["account_id"])
            session.post(
                f"{write_api}/api/accounts/{account_id}/deposit",
                json={"amount": OPENING_DEPOSIT},
                headers=headers,
                timeout=30,
            ).raise_for_status()
            accounts.append(account_id)
    return accounts


@dataclass
class PacedResult:
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)  # 0: no answer (connection failed)
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests
    behind: list[float] = field(default_factory=list)  # seconds a command started after its slot
    seconds: float = 0.0


class PacedLoad:
    """`rate` commands per second to the write API until `stop()`, from a schedule, not from the answers."""

    def __init__(self, write_api: str, accounts: list[UUID], rate: float, seed: int = 0) -> None:
        self._host, self._port = write_api.removeprefix("http://").split(":")
        self._accounts = [str(a) for a in accounts]
        self._interval = 1.0 / rate
        self._rng = random.Random(seed)
        self._jobs: queue.Queue[tuple[float, str, bytes] | None] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.result = PacedResult()
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(WORKERS)]
        self._scheduler = threading.Thread(target=self._schedule, daemon=True, name="paced-load")
        self._started = 0.0

    def start(self) -> PacedLoad:
        self._started = time.monotonic()
        for thread in [*self._threads, self._scheduler]:
            thread.start()
        return self

    def stop(self) -> PacedResult:
        """Stops at once: commands still waiting for a free client thread (the server fell behind the
        schedule) are dropped, not sent."""
        self._stop.set()
        self._scheduler.join()
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout=60)
        self.result.seconds = time.monotonic() - self._started
        return self.result

    def _schedule(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            pause = due - time.monotonic()
            if pause > 0:
                self._stop.wait(pause)
                if self._stop.is_set():
                    break
            self._jobs.put((due, *self._command()))
            due += self._interval

    def _command(self) -> tuple[str, bytes]:
        amount = f"{self._rng.randint(1, 10_000) / 100:.2f}"
        if self._rng.random() < TRANSFER_SHARE:
            source, target = self._rng.sample(self._accounts, 2)
            body = {"from_account": source, "to_account": target, "amount": amount}
            return "/api/transfers", json.dumps(body).encode()
        return f"/api/accounts/{self._rng.choice(self._accounts)}/deposit", json.dumps(
            {"amount": amount}
        ).encode()

    def _work(self) -> None:
        connection = http.client.HTTPConnection(self._host, int(self._port), timeout=30)
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        while (job := self._jobs.get()) is not None:
            if self._stop.is_set():
                continue  # drain the queue down to this thread's end marker
            due, path, body = job
            began = time.monotonic()
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                connection.close()  # reopened by the next request
                status = 0
            answered = time.monotonic()
            with self._lock:
                self.result.sent += 1
                self.result.statuses[status] = self.result.statuses.get(status, 0) + 1
                self.result.behind.append(max(began - due, 0.0))
                if status:
                    self.result.latencies.append(answered - began)
        connection.close()


# ------------------------------------------------------------------------------------------------- wrk


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests_per_s: float
    requests: int
    latency_ms: dict[str, float]  # p50, p75, p90, p99
    non_2xx: int
    socket_errors: int


DEPOSIT_SCRIPT = """
local accounts = {%(accounts)s}
wrk.method = "POST"
wrk.body = '{"amount": "1.00"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
request = function()
  return wrk.format(nil, "/api/accounts/" .. accounts[math.random(#accounts)] .. "/deposit")
end
"""

READ_SCRIPT = """
local accounts = {%(accounts)s}
request = function()
  return wrk.format("GET", "/api/accounts/" .. accounts[math.random(#accounts)])
end
"""


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    base_url: str, script: str, accounts: list[UUID], seconds: int, connections: int = 8
) -> WrkResult:
    """wrk with 2 threads and `connections` connections; each request picks a random account."""
    with tempfile.TemporaryDirectory(prefix="cqrs-bench-wrk-") as directory:
        path = Path(directory) / "script.lua"
        quoted = ", ".join(f'"{account}"' for account in accounts)
        path.write_text(script % {"accounts": quoted, "token": TOKEN})
        report = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(path), base_url],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    return parse_wrk(report)


def parse_wrk(report: str) -> WrkResult:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", report)
    total = re.search(r"(\d+) requests in", report)
    if rate is None or total is None:
        raise RuntimeError(f"unexpected wrk output:\n{report}")
    latency = {
        f"p{percent}": _milliseconds(value, unit)
        for percent, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", report, re.M)
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", report)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", report)
    return WrkResult(
        requests_per_s=float(rate[1]),
        requests=int(total[1]),
        latency_ms=latency,
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(n) for n in socket.groups()) if socket else 0,
    )


def _milliseconds(value: str, unit: str) -> float:
    return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)
