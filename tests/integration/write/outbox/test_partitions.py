"""The projector's partitions on the real broker: an account's events in one partition queue, in order; one
active consumer per partition, its standby taking over when it goes; the single queue of earlier releases
unbound, drained and deleted."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator

import pika
import pytest

from cqrs_common.events import EventEnvelope, from_wire
from cqrs_common.messaging import (
    AGGREGATE_ID_HEADER,
    EVENTS_BINDING_KEY,
    EVENTS_EXCHANGE,
    LEGACY_PROJECTOR_QUEUE,
    PROJECTOR_QUEUE_ARGUMENTS,
    Consumer,
    Delivery,
    ProjectorPartitions,
    Publisher,
    partition_of,
)
from devkit.polling import poll
from tests.integration.write.outbox.conftest import receive

ACCOUNTS = 24
EVENTS_PER_ACCOUNT = 5


def _publish_accounts(publisher: Publisher, make_event: Callable[..., EventEnvelope]) -> list[EventEnvelope]:
    """Five events on each of 24 accounts, interleaved as concurrent commands would be."""
    accounts = [uuid.uuid4() for _ in range(ACCOUNTS)]
    events = [
        make_event(aggregate_id=account, version=version, position=version * ACCOUNTS + i)
        for version in range(1, EVENTS_PER_ACCOUNT + 1)
        for i, account in enumerate(accounts)
    ]
    publisher.publish(events)
    return events


def _versions_by_partition(deliveries: list[Delivery]) -> dict[int | None, dict[str, list[int]]]:
    found: dict[int | None, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for delivery in deliveries:
        event = from_wire(delivery.body)
        found[partition_of(delivery.queue)][str(event.aggregate_id)].append(event.aggregate_version)
    return found


def test_an_accounts_events_share_one_partition_in_order_and_accounts_spread(
    publisher: Publisher, consumer: Consumer, make_event: Callable[..., EventEnvelope]
) -> None:
    events = _publish_accounts(publisher, make_event)
    deliveries = receive(consumer, len(events))
    consumer.ack(deliveries[-1].delivery_tag, multiple=True)

    assert all(d.headers[AGGREGATE_ID_HEADER] == str(from_wire(d.body).aggregate_id) for d in deliveries)
    by_partition = _versions_by_partition(deliveries)
    assert set(by_partition) <= set(range(consumer.partitions.count))
    accounts = [account for versions in by_partition.values() for account in versions]
    assert len(accounts) == len(set(accounts)) == ACCOUNTS  # no account in two partitions
    for versions in by_partition.values():
        assert all(v == list(range(1, EVENTS_PER_ACCOUNT + 1)) for v in versions.values())
    # 24 random accounts over 4 partitions: all in one would be a hash that does not spread (chance 4^-23).
    assert len(by_partition) > 1


@pytest.fixture
def pair(read_broker_url: str, consumer: Consumer) -> Iterator[tuple[Consumer, Consumer]]:
    """Projectors 0 and 1 of 2 as the broker sees them: each subscribes to its own partitions first."""
    owners = [
        Consumer(
            read_broker_url,
            connection_name=f"test-partition-{i}",
            partitions=ProjectorPartitions(ordinal=i, replicas=2, standby_delay=0.3),
            prefetch=50,
        )
        for i in range(2)
    ]
    yield owners[0], owners[1]
    for owner in owners:
        owner.close()


def test_each_partition_has_one_active_consumer_and_a_standby_takes_over_when_it_goes(
    publisher: Publisher,
    pair: tuple[Consumer, Consumer],
    make_event: Callable[..., EventEnvelope],
) -> None:
    first, second = pair
    for owner in pair:
        owner.receive(1, timeout=0.5)  # subscribes to its own partitions, then (0.3 s on) to the others
    for owner in pair:
        owner.receive(1, timeout=0.5)
        assert sorted(owner.subscribed) == sorted(owner.partitions.queues)

    events = _publish_accounts(publisher, make_event)
    received_first: list[Delivery] = []
    received_second: list[Delivery] = []

    def all_arrived() -> bool:
        # Both in turn: each receives only from the partitions it is active on.
        received_first.extend(first.receive(len(events), timeout=0.2))
        received_second.extend(second.receive(len(events), timeout=0.2))
        return len(received_first) + len(received_second) >= len(events)

    poll(all_arrived, 20, interval=0)
    assert len(received_first) + len(received_second) == len(events)
    # Each received only from the partitions it owns: it subscribed to them before the other did.
    assert {partition_of(d.queue) for d in received_first} <= {0, 2}
    assert {partition_of(d.queue) for d in received_second} <= {1, 3}
    second.ack(received_second[-1].delivery_tag, multiple=True)

    # The first goes with its deliveries unacknowledged: the second, its standby, receives them, in order.
    first.close()
    taken_over = receive(second, len(received_first))
    second.ack(taken_over[-1].delivery_tag, multiple=True)
    assert sorted(d.message_id for d in taken_over) == sorted(d.message_id for d in received_first)
    for versions in _versions_by_partition(taken_over).values():
        assert all(v == list(range(1, EVENTS_PER_ACCOUNT + 1)) for v in versions.values())


def test_the_single_queue_of_earlier_releases_is_unbound_drained_and_deleted(
    read_broker_url: str,
    publisher: Publisher,
    consumer: Consumer,
    make_event: Callable[..., EventEnvelope],
) -> None:
    # An existing deployment: the old queue, bound as earlier releases bound it, with events in it.
    connection = pika.BlockingConnection(pika.URLParameters(read_broker_url))
    try:
        channel = connection.channel()
        channel.queue_declare(LEGACY_PROJECTOR_QUEUE, durable=True, arguments=PROJECTOR_QUEUE_ARGUMENTS)
        channel.queue_bind(LEGACY_PROJECTOR_QUEUE, EVENTS_EXCHANGE, routing_key=EVENTS_BINDING_KEY)
        events = [make_event(position=i) for i in range(1, 4)]
        publisher.publish(events)  # into the old queue and into the partitions
        consumer.ack(receive(consumer, 3)[-1].delivery_tag, multiple=True)

        upgraded = Consumer(read_broker_url, connection_name="test-upgraded")
        try:
            assert upgraded.retiring == [LEGACY_PROJECTOR_QUEUE]
            publisher.publish([make_event(position=4)])  # reaches the partitions only
            deliveries = receive(upgraded, 4)
            upgraded.ack(deliveries[-1].delivery_tag, multiple=True)
            from_legacy = sorted(d.message_id for d in deliveries if d.queue == LEGACY_PROJECTOR_QUEUE)
            assert from_legacy == sorted(str(e.event_id) for e in events)
        finally:
            upgraded.close()

        # Empty now: a later connection deletes it, once the broker has seen the last consumer go (closing a
        # connection is asynchronous on its side).
        def deleted_by_a_new_connection() -> bool:
            with Consumer(read_broker_url, connection_name="test-upgraded-again") as again:
                return again.retiring == []

        assert poll(deleted_by_a_new_connection, 10, interval=0.2)
        probe = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):
            probe.queue_declare(LEGACY_PROJECTOR_QUEUE, passive=True)
    finally:
        if connection.is_open:
            connection.close()
