"""The reporting subscriber against the running system: a late start under concurrent writes loses and
doubles nothing, and both consumers of cqrs.events receive every event (fan-out).

The subscriber runs as `python -m read_service reporting` under a subscription name of this module's, as its
own broker user; its totals are compared with ones computed from the write side's events (devkit.reporting),
and the event ids it stored with the write side's."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from uuid import UUID, uuid4

import psycopg2
import pytest
import requests

from cqrs_common.messaging import Consumer, reporting_queues
from devkit import system_processes
from devkit.polling import eventually
from devkit.processes import ServiceProcess, free_port
from devkit.reporting import one_value, reporting_daily_totals, write_side_daily_totals
from tests.e2e.conftest import System


@pytest.fixture
def subscription(system: System) -> Iterator[str]:
    name = f"e2e-{uuid4().hex[:8]}"
    yield name
    with Consumer(_broker(system), connection_name="e2e-reporting-cleanup", declare=False) as broker:
        broker.delete_subscriber(reporting_queues(name))


def _broker(system: System) -> str:
    return system_processes.reporting_broker_url(system.read_broker_url)


def _start(system: System, subscription: str) -> ServiceProcess:
    process = system_processes.reporting(
        f"reporting-{subscription}", system.backends, free_port(), _broker(system), subscription=subscription
    )
    process.wait_for_log(system_processes.REPORTING_READY_EVENT, timeout=30)
    return process


def _counted_ids(system: System, subscription: str, path: str | None = None) -> set[str]:
    with psycopg2.connect(system.read_database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT event_id FROM reporting_counted_events WHERE subscription = %s"
            " AND (%s::text IS NULL OR path = %s)",
            [subscription, path, path],
        )
        rows = cursor.fetchall()
    connection.close()
    return {str(event_id) for (event_id,) in rows}


def _written_ids(system: System, after_position: int = 0) -> set[str]:
    with psycopg2.connect(system.write_database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT event_id FROM events WHERE position > %s", [after_position])
        rows = cursor.fetchall()
    connection.close()
    return {str(event_id) for (event_id,) in rows}


def _commands(system: System, session: requests.Session, accounts: list[UUID], seed: int) -> None:
    rng = random.Random(seed)
    amount = f"{rng.randint(1, 2000) / 100:.2f}"
    kind = rng.choice(["deposit", "withdraw", "transfer", "open"])
    if kind == "open":
        system.opened(session, "e2e-reporting", deposit="100.00")
    elif kind == "transfer":
        source, target = rng.sample(accounts, 2)
        body = {"from_account": str(source), "to_account": str(target), "amount": amount}
        system.command(session, "/api/transfers", body)
    else:
        system.command(session, f"/api/accounts/{rng.choice(accounts)}/{kind}", {"amount": amount})


def test_a_late_subscriber_under_concurrent_writes_counts_every_event_once(
    system: System, http: requests.Session, subscription: str
) -> None:
    accounts = [system.opened(http, f"e2e-reporting-{i}", deposit="1000.00")[0] for i in range(6)]
    for seed in range(150):
        _commands(system, http, accounts, seed)

    producing = threading.Event()
    producing.set()
    sent = [0, 0]

    def produce(slot: int) -> None:
        session = requests.Session()
        seed = 10_000 * (slot + 1)
        while producing.is_set():
            _commands(system, session, accounts, seed)
            seed += 1
            sent[slot] += 1
        session.close()

    producers = [threading.Thread(target=produce, args=(slot,), daemon=True) for slot in range(2)]
    for producer in producers:
        producer.start()
    try:
        time.sleep(0.5)
        subscriber = _start(system, subscription)
        switch = subscriber.wait_for_log("reporting_switched_to_live", timeout=90)
        time.sleep(2)  # commands keep coming after the switch: they reach it through the queue only
    finally:
        producing.clear()
        for producer in producers:
            producer.join(timeout=30)
    try:
        written = _written_ids(system)
        eventually(
            lambda: len(_counted_ids(system, subscription)) >= len(written), timeout=60, what="every event"
        )
        time.sleep(1)  # anything counted beyond the write side's events would show now
        counted = _counted_ids(system, subscription)
        assert counted == written  # none missing, none foreign; the ids' key makes each one once
        assert write_side_daily_totals(system.write_database_url) == reporting_daily_totals(
            system.read_database_url, subscription
        )  # the totals counted nothing twice either
        history = _counted_ids(system, subscription, "history")
        live = _counted_ids(system, subscription, "live")
        assert history and live and history | live == written and not history & live
        assert sum(sent) > 0 and switch["history_events"] == len(history) >= 150
        state = "SELECT history_events, live_events FROM reporting_subscriptions WHERE subscription = %s"
        assert one_value(system.read_database_url, state.replace(", live_events", ""), [subscription]) == len(
            history
        )
        assert one_value(
            system.read_database_url, state.replace("history_events, ", ""), [subscription]
        ) == len(live)
    finally:
        subscriber.terminate()


def test_the_projector_and_the_subscriber_each_receive_every_event(
    system: System, http: requests.Session, subscription: str
) -> None:
    subscriber = _start(system, subscription)
    try:

        def switched() -> bool:
            # Its catch-up ends at the first event committed (clocks' margin past) after its queue was bound.
            system.opened(http, "e2e-fanout-fence")
            return bool(subscriber.logged("reporting_switched_to_live"))

        eventually(switched, timeout=60, interval=0.5, what="the subscriber to go live")
        after = one_value(system.write_database_url, "SELECT coalesce(max(position), 0) FROM events")
        accounts = [system.opened(http, f"e2e-fanout-{i}", deposit="50.00")[0] for i in range(3)]
        for seed in range(60):
            _commands(system, http, accounts, seed)
        fresh = _written_ids(system, after)
        assert len(fresh) >= 60
        eventually(
            lambda: fresh <= _counted_ids(system, subscription, "live"), timeout=60, what="the subscriber"
        )

        def projected() -> set[str]:
            with psycopg2.connect(system.read_database_url) as connection, connection.cursor() as cursor:
                cursor.execute("SELECT event_id FROM applied_events WHERE path = 'broker'")
                rows = cursor.fetchall()
            connection.close()
            return {str(event_id) for (event_id,) in rows}

        # Both took every one of them from their own queue: the projector through the broker path, the
        # subscriber live (its queue), none from the log.
        eventually(lambda: fresh <= projected(), timeout=60, what="the projector")
        assert system.metric("projector", "cqrs_events_applied_total", path="broker") >= len(fresh)
    finally:
        subscriber.terminate()
