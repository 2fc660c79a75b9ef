"""What the chaos scenarios share: steady traffic, the numbers each scenario prints, and the checks that the
read side is the fold of the write side's events. (Fixtures and the summary hook live in conftest.py.)"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg2
import requests

from devkit.polling import eventually, poll
from devkit.processes import DEVELOPMENT_SECRETS_ALLOWED, PYTHON, REPO
from tests.e2e.conftest import System
from tests.support.private_postgres import PrivatePostgres

VERIFY_COMMAND = REPO / "services/read_service/projections/management/commands/verify_read_models.py"
RESULTS: list[str] = []  # one line per scenario, printed in the terminal summary


@dataclass
class ChaosWriteDatabase:
    server: PrivatePostgres
    name: str
    url: str


@dataclass
class ChaosReadDatabase:
    server: PrivatePostgres
    name: str
    url: str

    @property
    def subscription(self) -> str:
        return f"{self.name}_events"  # and its slot on the write cluster

    def sql(self, *statements: str) -> str:
        return self.server.sql(self.name, *statements)


class Traffic:
    """Deposits, withdrawals and transfers over HTTP from a few threads until the block ends."""

    ALLOWED = frozenset({200, 201, 409})  # 409: insufficient funds, the only refusal the mix can cause

    def __init__(
        self,
        system: System,
        accounts: list[UUID],
        threads: int = 3,
        pause: float = 0.02,
        allowed: frozenset[int] = ALLOWED,
    ) -> None:
        self.system = system
        self.accounts = accounts
        self.allowed = allowed
        self.statuses: list[int] = []
        self.acknowledged: dict[UUID, int] = {}  # per account, the highest version a success answer reported
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(seed, pause)) for seed in range(threads)]
        self.started_at = datetime.now(UTC)
        self.stopped_at: float | None = None

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        self.stopped_at = time.monotonic()

    def _run(self, seed: int, pause: float) -> None:
        rng = random.Random(seed)
        with requests.Session() as session:
            while not self._stop.is_set():
                amount = f"{rng.randint(1, 3000) / 100:.2f}"
                try:
                    if rng.random() < 0.4:
                        source, target = rng.sample(self.accounts, 2)
                        body = {"from_account": str(source), "to_account": str(target), "amount": amount}
                        response = self.system.command(session, "/api/transfers", body)
                    else:
                        kind = rng.choice(["deposit", "withdraw"])
                        path = f"/api/accounts/{rng.choice(self.accounts)}/{kind}"
                        response = self.system.command(session, path, {"amount": amount})
                    self.statuses.append(response.status_code)
                    if response.status_code in (200, 201):
                        self._acknowledge(response.json())
                except requests.RequestException as exc:  # counted as a failure below, never silent
                    self.statuses.append(-1)
                    print(f"command failed: {exc}", file=sys.stderr)
                time.sleep(pause)

    def _acknowledge(self, body: dict[str, Any]) -> None:
        for account in (body, body.get("from_account"), body.get("to_account")):
            if isinstance(account, dict) and "version" in account:
                account_id = UUID(account["account_id"])
                self.acknowledged[account_id] = max(self.acknowledged.get(account_id, 0), account["version"])

    def check(self) -> None:
        assert self.statuses, "no command was sent"
        assert set(self.statuses) <= self.allowed, sorted(set(self.statuses))
        stored = self.system.write_accounts()
        lost = {
            account: (version, stored[account][1])
            for account, version in self.acknowledged.items()
            if stored[account][1] < version
        }
        assert not lost, f"acknowledged versions missing from the write side (acknowledged, stored): {lost}"


@dataclass
class Scenario:
    """What one scenario observed; `record` prints it in the terminal summary."""

    name: str
    system: System
    notes: dict[str, str] = field(default_factory=dict)
    duplicates_before: float = 0.0

    def __post_init__(self) -> None:
        self.duplicates_before = duplicates(self.system)

    def note(self, key: str, value: float | str) -> None:
        self.notes[key] = f"{value:.2f} s" if isinstance(value, float) else str(value)

    def record(self) -> None:
        line = f"{self.name}: " + ", ".join(f"{k} {v}" for k, v in self.notes.items())
        RESULTS.append(line)
        print(line)


def caught_up(system: System, since: float, timeout: float = 90.0) -> float:
    """Seconds from `since` (a monotonic time) until the read side shows every account at least at the version
    the write side has now: how long the read side took to recover from what was done at `since`."""
    truth = system.write_accounts()
    with requests.Session() as session:
        eventually(
            lambda: system.converged(session, truth), timeout=timeout, interval=0.1, what="catching up"
        )
    return time.monotonic() - since


def projection(system: System, retry_for: float = 10.0) -> dict[str, Any]:
    """/api/projection, retried as a client should on the contract's retryable 503: after the read database
    restarts, each worker thread's stale connection fails one request before Django replaces it."""
    answers: list[requests.Response] = []

    def answered() -> bool:
        answers.append(requests.get(f"{system.read_api}/api/projection", timeout=10))
        return answers[-1].status_code != 503

    poll(answered, retry_for, interval=0.1)
    response = answers[-1]
    assert response.status_code == 200, response.text
    return response.json()


def read_rows(url: str, sql: str, params: Any = None) -> list[tuple]:
    connection = psycopg2.connect(url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    finally:
        connection.close()


def lag_by_path(system: System, since: datetime) -> dict[str, tuple[int, float, float, float]]:
    """Per path, for the events that occurred since `since`: count, p50, p99 and max of their lag
    (applied_at - occurred_at)."""
    rows = read_rows(
        system.read_database_url,
        "SELECT path, extract(epoch FROM applied_at - occurred_at)::float8 FROM applied_events"
        " WHERE occurred_at >= %s",
        (since,),
    )
    lags: dict[str, list[float]] = {}
    for path, lag in rows:
        lags.setdefault(path, []).append(lag)
    return {path: _stats(values) for path, values in lags.items()}


def _stats(values: list[float]) -> tuple[int, float, float, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return len(ordered), statistics.median(ordered), p99, ordered[-1]


def duplicates(system: System) -> float:
    return sum(
        system.metric("projector", "cqrs_events_duplicate_total", path=p) for p in ("broker", "replication")
    )


# --------------------------------------------------------------------------------------- the read side checks

_WRITE_FOLD = """
    SELECT aggregate_id, max(aggregate_version), count(*),
           count(*) FILTER (WHERE event_type NOT IN ('AccountOpened', 'AccountClosed')),
           coalesce(sum(CASE WHEN event_type IN ('MoneyDeposited', 'TransferCredited') THEN 1
                             WHEN event_type IN ('MoneyWithdrawn', 'TransferDebited') THEN -1
                        END * (data->>'amount')::numeric), 0)
      FROM events GROUP BY aggregate_id
"""
_READ_STATE = """
    SELECT v.account_id, v.version, v.balance,
           (SELECT count(*) FROM applied_events a WHERE a.aggregate_id = v.account_id),
           (SELECT count(DISTINCT a.version) FROM applied_events a WHERE a.aggregate_id = v.account_id),
           (SELECT count(*) FROM statement_lines s WHERE s.account_id = v.account_id),
           (SELECT coalesce(sum(CASE WHEN s.kind IN ('deposit', 'transfer_in') THEN 1 ELSE -1 END
                                * s.amount), 0)
              FROM statement_lines s WHERE s.account_id = v.account_id),
           (SELECT s.balance_after FROM statement_lines s WHERE s.account_id = v.account_id
             ORDER BY s.version DESC LIMIT 1)
      FROM account_view v
"""


def read_side_problems(system: System) -> list[str]:
    """Every way the read side differs from the fold of the write side's events (empty when it does not)."""
    write = {UUID(str(r[0])): r[1:] for r in read_rows(system.write_database_url, _WRITE_FOLD)}
    truth = system.write_accounts()
    read = {UUID(str(r[0])): r[1:] for r in read_rows(system.read_database_url, _READ_STATE)}
    problems = [f"{a}: not projected" for a in write.keys() - read.keys()]
    problems += [f"{a}: projected but unknown to the write side" for a in read.keys() - write.keys()]
    for account, (version, events, money_events, fold) in write.items():
        if account not in read:
            continue
        r_version, balance, applied, distinct, lines, line_sum, last_after = read[account]
        if (r_version, balance) != (version, fold) or truth[account] != (fold, version):
            problems.append(
                f"{account}: read {balance} v{r_version}, fold {fold} v{version}, write {truth[account]}"
            )
        if applied != events or distinct != events:
            problems.append(f"{account}: {applied} tracking rows ({distinct} versions) for {events} events")
        if lines != money_events or line_sum != balance or (last_after or Decimal(0)) != balance:
            problems.append(f"{account}: statement of {lines} lines sums to {line_sum}, ends at {last_after}")
    (totals,) = read_rows(
        system.read_database_url,
        "SELECT (SELECT coalesce(sum(total_balance), 0) FROM currency_totals),"
        " (SELECT coalesce(sum(balance), 0) FROM account_view),"
        " (SELECT count(*) FROM pending_events),"
        " (SELECT count(*) FROM dead_letters WHERE reason = 'handler_failed'),"
        " (SELECT count(*) - count(DISTINCT event_id) FROM applied_events)",
    )
    if totals[0] != totals[1]:
        problems.append(f"currency totals {totals[0]} != sum of balances {totals[1]}")
    if totals[2] or totals[3] or totals[4]:
        problems.append(
            f"{totals[2]} events parked, {totals[3]} failed in a handler, {totals[4]} applied twice"
        )
    return problems


def check_read_side(system: System, scenario: Scenario, traffic: Traffic) -> float:
    """Waits until the read side converged (timing it from the end of the traffic), then compares it with the
    write side, and runs `verify_read_models` when the read service has it. Returns how many deliveries the
    projector ignored as duplicates during the scenario."""
    traffic.check()
    with requests.Session() as session:
        system.wait_until_converged(session, timeout=90)
    assert traffic.stopped_at is not None
    scenario.note("converged after traffic", time.monotonic() - traffic.stopped_at)
    problems = read_side_problems(system)
    assert problems == [], "\n".join(problems[:20])
    if VERIFY_COMMAND.exists():
        verified = subprocess.run(
            [PYTHON, "-m", "read_service", "verify_read_models", "--wait", "30"],
            env={
                **os.environ,
                **DEVELOPMENT_SECRETS_ALLOWED,
                "READ_DATABASE_URL": system.read_database_url,
                "LOG_FORMAT": "json",
            },
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]
    scenario.note("commands", str(len(traffic.statuses)))
    for path, (count, p50, p99, worst) in sorted(lag_by_path(system, traffic.started_at).items()):
        scenario.note(
            f"lag {path}", f"n={count} p50 {p50 * 1000:.0f} ms p99 {p99 * 1000:.0f} ms max {worst:.2f} s"
        )
    counted = duplicates(system)  # a projector restarted during the scenario counts from zero again
    ignored = counted - scenario.duplicates_before if counted >= scenario.duplicates_before else counted
    scenario.note("duplicates ignored", f"{ignored:.0f}")
    scenario.record()
    return ignored
