"""Benchmarks of the projector (run with -m bench): latency at a steady rate and throughput on a backlog.

The projector runs as its command in a subprocess, as in production. Latency is read from the database:
`applied_events.applied_at - occurred_at`, where occurred_at is set just before publishing, so it is the
projector's share of the end-to-end lag (broker hop, parse, apply, commit).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from django.db import connection

from devkit.polling import eventually
from read_service.projections.models import AppliedEvent
from tests.integration.read.conftest import AccountHistory, projector_command

pytestmark = [pytest.mark.bench, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def projector_process(broker, broker_url, empty_replica):
    with projector_command(broker_url) as (process, _metrics_port):
        yield process
        process.terminate()
        process.wait(timeout=15)


def _lag_percentiles(event_type: str) -> tuple[float, float, float]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY lag), max(lag)
              FROM (SELECT extract(epoch FROM applied_at - occurred_at) AS lag
                      FROM applied_events WHERE type = %s) AS lags
            """,
            [event_type],
        )
        (p50, p99), worst = cursor.fetchone()
    return p50 * 1000, p99 * 1000, float(worst) * 1000


def _with_now(event):
    return type(event)(
        **{**{f: getattr(event, f) for f in event.__dataclass_fields__}, "occurred_at": datetime.now(UTC)}
    )


def test_latency_at_200_events_per_second(projector_process, publish) -> None:
    rate, seconds = 200, 10
    accounts = [AccountHistory() for _ in range(50)]
    publish(*(a.opened() for a in accounts))
    eventually(lambda: AppliedEvent.objects.count() == len(accounts), timeout=120)

    started = time.monotonic()
    for n in range(rate * seconds):
        time.sleep(max(0.0, started + n / rate - time.monotonic()))
        publish(_with_now(accounts[n % len(accounts)].deposited("1.00")))
    eventually(lambda: AppliedEvent.objects.count() == len(accounts) + rate * seconds, timeout=120)

    p50, p99, worst = _lag_percentiles("MoneyDeposited")
    print(f"\nprojector latency at {rate} ev/s for {seconds}s:", end=" ")
    print(f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {worst:.2f} ms")


def test_throughput_on_a_backlog(broker, publish, projector_process) -> None:
    accounts = [AccountHistory() for _ in range(100)]
    events = [a.opened() for a in accounts] + [a.deposited("1.00") for _ in range(99) for a in accounts]
    for start in range(0, len(events), 1000):
        publish(*events[start : start + 1000])

    started = time.monotonic()
    eventually(lambda: AppliedEvent.objects.count() == len(events), timeout=120, interval=0.05)
    elapsed = time.monotonic() - started
    print(f"\nprojector throughput: {len(events)} events in {elapsed:.2f}s", end=" ")
    print(f"= {len(events) / elapsed:.0f} events/s")
