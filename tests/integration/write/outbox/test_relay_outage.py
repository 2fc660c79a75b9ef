"""The relay through a RabbitMQ outage, on a private broker node: nothing is lost, everything drains."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from cqrs_common.messaging import Consumer
from devkit.metrics import sample_at
from devkit.polling import eventually
from devkit.private_rabbitmq import PrivateRabbitMQ
from devkit.processes import ServiceProcess
from tests.integration.write.outbox.conftest import Outbox, receive_events


def _metric(process: ServiceProcess, name: str) -> float | None:
    return sample_at(f"http://127.0.0.1:{process.env['RELAY_METRICS_PORT']}/metrics", name)


@pytest.mark.chaos
def test_the_relay_rides_out_a_broker_outage_and_drains_everything(
    outbox: Outbox, private_broker: PrivateRabbitMQ, relay_processes: Callable[..., ServiceProcess]
) -> None:
    Consumer(private_broker.url, connection_name="test-topology").close()  # the read side's queues exist
    relay = relay_processes("relay-outage", RABBITMQ_URL=private_broker.url)
    relay.wait_for_log("relay_leadership_acquired")
    appended = outbox.append(100, accounts=10)
    eventually(lambda: outbox.unpublished() == 0, timeout=20, what="the first events to be published")

    private_broker.stop()
    for _ in range(20):  # commands keep committing while the broker is away
        appended += outbox.append(25, accounts=5)
        time.sleep(0.1)
    relay.wait_for_log("broker_connection_failed")
    assert relay.running
    assert outbox.unpublished() == 500
    eventually(lambda: _metric(relay, "cqrs_outbox_backlog") == 500, timeout=10, what="the backlog gauge")
    assert _metric(relay, "cqrs_outbox_oldest_age_seconds") > 0

    private_broker.start()
    eventually(lambda: outbox.unpublished() == 0, timeout=60, what="the backlog to drain after the outage")

    with Consumer(private_broker.url, connection_name="test-verify") as consumer:
        received = receive_events(consumer, len(appended), timeout=30)
    # At least once: every event arrived (a batch in flight when the broker went may have arrived twice).
    assert {e.event_id for e in received} == {a.event_id for a in appended}
    first_seen: dict[str, list[int]] = {}
    seen = set()
    for event in received:
        if event.event_id not in seen:
            seen.add(event.event_id)
            first_seen.setdefault(str(event.aggregate_id), []).append(event.aggregate_version)
    assert all(versions == sorted(versions) for versions in first_seen.values())
    assert relay.terminate() == 0
