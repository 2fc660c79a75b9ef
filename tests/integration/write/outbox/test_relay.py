"""The outbox relay against the real write database and broker: in this process where a thread will do,
as `python -m write_service relay` processes where leadership and kill -9 are the point."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY

from cqrs_common.events import EventEnvelope
from cqrs_common.messaging import Consumer, ProjectorPartitions
from devkit.polling import eventually
from devkit.processes import ServiceProcess
from tests.integration.write.outbox.conftest import Outbox, per_account, receive_events
from write_service.outbox.relay import Relay
from write_service.outbox.session import session_open


def _published_total() -> float:
    return REGISTRY.get_sample_value("cqrs_events_published_total", {"type": "MoneyDeposited"}) or 0.0


def _versions_by_aggregate(events: list[EventEnvelope]) -> dict[str, list[int]]:
    versions: dict[str, list[int]] = defaultdict(list)
    for event in events:
        versions[str(event.aggregate_id)].append(event.aggregate_version)
    return versions


def test_the_relay_publishes_exactly_the_committed_events_in_order_and_marks_them(
    outbox: Outbox, consumer: Consumer, start_relay: Callable[..., Relay]
) -> None:
    appended = outbox.append(30, accounts=3)
    counted_before = _published_total()

    start_relay(batch_size=7)  # several batches, the last one partial

    eventually(lambda: outbox.unpublished() == 0, timeout=20, what="the outbox to drain")
    events = receive_events(consumer, 30)
    # Position order within each account, nothing twice, nothing missing.
    assert per_account(events) == per_account(appended)
    assert sorted(e.event_id for e in events) == sorted(a.event_id for a in appended)
    for versions in _versions_by_aggregate(events).values():
        assert versions == list(range(1, 11))
    assert all(e.correlation_id == "test-correlation" and e.type == "MoneyDeposited" for e in events)
    assert consumer.receive(max_count=10, timeout=0.3) == []
    assert _published_total() - counted_before == 30
    eventually(lambda: REGISTRY.get_sample_value("cqrs_outbox_backlog") == 0, timeout=5, what="backlog 0")


def test_a_commit_wakes_the_relay_without_waiting_for_the_poll(
    outbox: Outbox, consumer: Consumer, start_relay: Callable[..., Relay]
) -> None:
    start_relay(poll_interval=60.0)  # only the NOTIFY of the commit can wake it within the test
    time.sleep(0.5)  # the relay is idle, listening

    [appended] = outbox.append(1)

    [event] = receive_events(consumer, 1, timeout=10)
    assert event.event_id == appended.event_id
    eventually(lambda: outbox.unpublished() == 0, timeout=5, what="the event to be marked")


def test_nothing_is_marked_published_until_the_broker_confirms(
    outbox: Outbox,
    consumer: Consumer,
    start_relay: Callable[..., Relay],
    broker_vhost: str,
    read_broker_url: str,
) -> None:
    import subprocess

    # Without the projector's queues RabbitMQ returns every message as unroutable: no confirm of delivery.
    for queue in ProjectorPartitions().queues:
        subprocess.run(
            ["rabbitmqctl", "-q", "-p", broker_vhost, "delete_queue", queue], check=True, timeout=60
        )
    try:
        outbox.append(20, accounts=2)
        start_relay()
        time.sleep(2.0)  # several publish attempts, each refused
        assert outbox.unpublished() == 20
    finally:
        Consumer(read_broker_url, connection_name="test-redeclare").close()

    eventually(lambda: outbox.unpublished() == 0, timeout=20, what="the outbox to drain once routable")
    assert len({e.event_id for e in receive_events(consumer, 20)}) == 20


def test_a_second_relay_stands_by_and_takes_over_when_the_leader_stops(
    outbox: Outbox, consumer: Consumer, relay_processes: Callable[..., ServiceProcess]
) -> None:
    leader = relay_processes("relay-a")
    leader.wait_for_log("relay_leadership_acquired")
    standby = relay_processes("relay-b")
    standby.wait_for_log("relay_standing_by")

    first = outbox.append(10, accounts=2)
    assert per_account(receive_events(consumer, 10)) == per_account(first)
    assert not standby.logged("event_published")
    assert not standby.logged("relay_leadership_acquired")

    assert leader.terminate() == 0  # SIGTERM: finishes, closes, releases the lock at once
    assert leader.logged("relay_stopped")
    standby.wait_for_log("relay_leadership_acquired", timeout=10)

    second = outbox.append(10, accounts=2)
    events = receive_events(consumer, 10)
    assert per_account(events) == per_account(second)
    assert consumer.receive(max_count=10, timeout=0.5) == []  # nothing published twice


def test_a_relay_killed_between_publish_and_mark_leaves_duplicates_and_no_gap(
    outbox: Outbox,
    consumer: Consumer,
    relay_processes: Callable[..., ServiceProcess],
    database: dict[str, Any],
) -> None:
    appended = outbox.append(50, accounts=5)
    # Hold the progress row's lock: the relay can publish the events, but its advance of the mark waits.
    blocker = outbox.connection
    blocker.autocommit = False
    with blocker.cursor() as cursor:
        cursor.execute("SELECT mark FROM outbox_progress FOR UPDATE")

    first = relay_processes("relay-killed")
    first.wait_for_log("relay_leadership_acquired")
    published_once = receive_events(consumer, 50)
    assert len(published_once) == 50

    first.kill()  # kill -9 with the batch confirmed but the mark not advanced
    # Its server session notices the dead client within a second (client_connection_check_interval).
    eventually(lambda: not _session_of("relay-killed", database), timeout=10, what="the dead relay's session")
    blocker.rollback()
    blocker.autocommit = True
    assert outbox.unpublished() == 50

    second = relay_processes("relay-restarted")
    second.wait_for_log("relay_leadership_acquired")
    eventually(lambda: outbox.unpublished() == 0, timeout=20, what="the outbox to drain")
    published_again = receive_events(consumer, 50)

    expected = per_account(appended)
    assert per_account(published_once) == expected
    assert per_account(published_again) == expected  # each event exactly twice, none missing


def _session_of(application_name: str, database: dict[str, Any]) -> bool:
    session = session_open(database, application_name="test-observer")
    try:
        with session.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = %s", (application_name,))
            return cursor.fetchone() is not None
    finally:
        session.close()


def test_the_relays_session_asks_the_server_to_end_it_soon_after_the_relay_falls_silent(
    database: dict[str, Any],
) -> None:
    """The bound on a silent leader (tests/chaos cuts one): set on the session itself, server and client."""
    session = session_open(database, application_name="test-timeouts", server_timeout=10, client_timeout=20)
    try:
        with session.cursor() as cursor:
            cursor.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN"
                " ('tcp_user_timeout', 'tcp_keepalives_idle', 'tcp_keepalives_interval')"
            )
            assert dict(cursor.fetchall()) == {
                "tcp_user_timeout": "10000",  # ms
                "tcp_keepalives_idle": "5",  # s
                "tcp_keepalives_interval": "1",
            }
        assert session.get_dsn_parameters()["tcp_user_timeout"] == "20000"
        assert session.get_dsn_parameters()["keepalives_idle"] == "10"
    finally:
        session.close()
