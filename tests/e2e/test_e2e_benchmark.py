"""End-to-end numbers (run with -m bench): how fast a backlog drains through relay, broker and projector,
and how far behind the read side is at a steady rate of commands."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import psycopg2
import pytest
import requests

from devkit.polling import eventually
from tests.e2e.conftest import System

BACKLOG_COMMANDS = 10_000
STEADY_RATE_PER_SECOND = 50
STEADY_SECONDS = 10


def _events_written(system: System) -> int:
    with psycopg2.connect(system.write_database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM events")
        count = cursor.fetchone()[0]
    connection.close()
    return count


def _events_applied(system: System, session: requests.Session) -> int:
    return session.get(f"{system.read_api}/api/stats", timeout=10).json()["events_applied"]


@pytest.mark.bench
def test_backlog_drain_rate_end_to_end(system: System, http: requests.Session) -> None:
    accounts = [system.open_account(http, owner=f"bench-{i}") for i in range(100)]
    system.wait_until_converged(http)
    system.processes["relay"].terminate()

    def deposit(i: int) -> int:
        with requests.Session() as session:
            path = f"/api/accounts/{accounts[i % len(accounts)]}/deposit"
            return system.command(session, path, {"amount": "1.00"}).status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(deposit, range(BACKLOG_COMMANDS)))
    accepted_in = time.perf_counter() - started
    assert set(statuses) == {200}
    backlog = system.unpublished()
    total = _events_written(system)

    started = time.perf_counter()
    relay = system.start_relay()
    eventually(lambda: system.unpublished() == 0, timeout=300, interval=0.02, what="the outbox to drain")
    eventually(lambda: _events_applied(system, http) >= total, timeout=300, interval=0.05, what="projection")
    projected_in = time.perf_counter() - started
    # The relay's own clock: from taking the lead (its start-up excluded) to the last batch confirmed.
    led_at = _logged_at(relay.logged("relay_leadership_acquired")[0])
    relayed_in = _logged_at(relay.logged("event_published")[-1]) - led_at

    rate = BACKLOG_COMMANDS / accepted_in
    print(f"\ncommands accepted: {BACKLOG_COMMANDS} in {accepted_in:.1f} s ({rate:,.0f}/s)")
    print(f"backlog of {backlog} events relayed in {relayed_in:.2f} s ({backlog / relayed_in:,.0f} events/s)")
    print(
        f"applied on the read side {projected_in:.2f} s after the relay started"
        f" ({backlog / projected_in:,.0f} events/s end to end)"
    )


def _logged_at(line: dict) -> float:
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


@pytest.mark.bench
def test_lag_at_a_steady_rate(system: System, http: requests.Session) -> None:
    accounts = [system.open_account(http, owner=f"steady-{i}", deposit="10.00") for i in range(10)]
    system.wait_until_converged(http)
    lag_sum_before = system.metric("projector", "cqrs_end_to_end_lag_seconds_sum")
    lag_count_before = system.metric("projector", "cqrs_end_to_end_lag_seconds_count")
    lags: list[float] = []
    interval = 1.0 / STEADY_RATE_PER_SECOND
    next_at = time.perf_counter()
    for i in range(STEADY_RATE_PER_SECOND * STEADY_SECONDS):
        time.sleep(max(next_at - time.perf_counter(), 0))
        next_at += interval
        account_id = accounts[i % len(accounts)]
        response = system.command(http, f"/api/accounts/{account_id}/deposit", {"amount": "1.00"})
        answered = time.perf_counter()
        version = response.json()["version"]
        read = system.read_account(http, account_id, min_version=version, wait_ms=5000)
        assert read.status_code == 200
        lags.append(time.perf_counter() - answered)

    lag_sum = system.metric("projector", "cqrs_end_to_end_lag_seconds_sum") - lag_sum_before
    lag_count = system.metric("projector", "cqrs_end_to_end_lag_seconds_count") - lag_count_before
    lags.sort()
    p50, p95, p99 = (statistics.quantiles(lags, n=100)[k] * 1000 for k in (49, 94, 98))
    mean_lag = lag_sum / max(lag_count, 1) * 1000
    print(f"\n{len(lags)} deposits at {STEADY_RATE_PER_SECOND}/s, answered -> visible on the read API:")
    print(f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms, max {lags[-1] * 1000:.1f} ms")
    print(f"projector's mean commit-to-applied lag: {mean_lag:.1f} ms ({lag_count:.0f} events)")
