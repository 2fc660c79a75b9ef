"""cqrs_common.messaging against the real broker, with each side's own user and permissions (infra.sh)."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from cqrs_common.events import to_wire
from cqrs_common.messaging import (
    DEAD_LETTER_QUEUE,
    DELIVERY_LIMIT,
    BrokerError,
    BrokerUnavailable,
    Consumer,
    ProjectorPartitions,
    Publisher,
    PublishFailed,
    partition_queue,
)
from devkit.polling import eventually
from devkit.processes import free_port
from tests.integration.write.outbox.conftest import receive


def test_declaring_the_topology_again_changes_nothing(consumer: Consumer, read_broker_url: str) -> None:
    with Consumer(read_broker_url, connection_name="test-second-declaration") as again:
        assert again.backlog() == 0
        assert again.message_count(DEAD_LETTER_QUEUE) == 0


def test_a_confirmed_batch_is_queued_in_order_with_the_contract_properties(
    publisher: Publisher, consumer: Consumer, make_event
) -> None:
    account = uuid.uuid4()
    events = [
        make_event(
            "AccountOpened",
            aggregate_id=account,
            version=1,
            position=10,
            data={"owner": "a", "currency": "EUR"},
        ),
        make_event("MoneyDeposited", aggregate_id=account, version=2, position=11),
        make_event("MoneyWithdrawn", aggregate_id=account, version=3, position=12, correlation_id=None),
    ]

    publisher.publish(events)

    # Returned from publish means confirmed, which for a quorum queue means enqueued.
    assert consumer.backlog() == 3
    deliveries = receive(consumer, 3)
    assert [d.body for d in deliveries] == [to_wire(e) for e in events]
    for delivery, event in zip(deliveries, events, strict=True):
        assert delivery.routing_key == f"account.{event.type}"
        assert delivery.exchange == "cqrs.events"
        assert delivery.content_type == "application/json"
        assert delivery.message_id == str(event.event_id)
        assert delivery.type == event.type
        assert delivery.correlation_id == event.correlation_id
        assert delivery.timestamp is not None and abs(delivery.timestamp - time.time()) < 60
        assert delivery.published_at is not None
        assert delivery.delivery_count == 0 and not delivery.redelivered
    consumer.ack(deliveries[-1].delivery_tag, multiple=True)


def test_batches_sent_ahead_are_confirmed_in_order(
    publisher: Publisher, consumer: Consumer, make_event
) -> None:
    # One account: its events share a partition, whose queue keeps their order.
    account = uuid.uuid4()
    first = [make_event(aggregate_id=account, position=i) for i in range(1, 6)]
    second = [make_event(aggregate_id=account, position=i) for i in range(6, 11)]

    first_ticket = publisher.send(first)
    second_ticket = publisher.send(second)
    publisher.wait_for_confirms(first_ticket)
    publisher.wait_for_confirms(second_ticket)

    assert second_ticket == first_ticket + 5
    assert [d.message_id for d in receive(consumer, 10)] == [str(e.event_id) for e in first + second]


def test_receive_returns_batches_and_ack_multiple_settles_them_all(
    publisher: Publisher, consumer: Consumer, read_broker_url: str, make_event
) -> None:
    publisher.publish([make_event(position=i) for i in range(1, 26)])

    sizes = []
    while batch := consumer.receive(max_count=10, timeout=1.0):
        sizes.append(len(batch))
        consumer.ack(batch[-1].delivery_tag, multiple=True)
    consumer.close()

    assert sizes == [10, 10, 5]
    with Consumer(read_broker_url, connection_name="test-after-ack") as fresh:
        assert fresh.receive(max_count=10, timeout=0.3) == []


def test_unacknowledged_deliveries_return_to_the_queue_when_the_consumer_goes(
    publisher: Publisher, consumer: Consumer, read_broker_url: str, make_event
) -> None:
    event = make_event()
    publisher.publish([event])
    assert len(consumer.receive(max_count=10, timeout=2.0)) == 1
    consumer.close()

    with Consumer(read_broker_url, connection_name="test-redelivery") as fresh:
        [again] = receive(fresh, 1)
        assert again.message_id == str(event.event_id)
        assert again.redelivered and again.delivery_count == 1
        fresh.ack(again.delivery_tag)


def test_a_rejected_message_is_dead_lettered_with_its_routing_key_and_can_be_replayed(
    publisher: Publisher, consumer: Consumer, make_event
) -> None:
    event = make_event("MoneyWithdrawn")
    publisher.publish([event])
    [delivery] = receive(consumer, 1)

    consumer.reject(delivery.delivery_tag)

    eventually(lambda: consumer.message_count(DEAD_LETTER_QUEUE) == 1, timeout=5, what="the dead letters")
    dead = consumer.get(DEAD_LETTER_QUEUE)
    assert dead is not None
    assert dead.routing_key == "account.MoneyWithdrawn"
    assert dead.message_id == str(event.event_id) and dead.body == to_wire(event)
    assert dead.headers["x-death"][0]["reason"] == "rejected"

    consumer.republish(dead)
    consumer.ack(dead.delivery_tag)

    [replayed] = receive(consumer, 1)
    assert replayed.message_id == str(event.event_id)
    assert replayed.correlation_id == event.correlation_id
    consumer.ack(replayed.delivery_tag)
    assert consumer.message_count(DEAD_LETTER_QUEUE) == 0


def test_a_message_requeued_past_the_delivery_limit_is_dead_lettered(
    publisher: Publisher, consumer: Consumer, make_event
) -> None:
    event = make_event()
    publisher.publish([event])

    for _ in range(DELIVERY_LIMIT + 1):
        batch = consumer.receive(max_count=1, timeout=1.0)
        if not batch:
            break
        consumer.requeue(batch[0].delivery_tag)

    eventually(lambda: consumer.message_count(DEAD_LETTER_QUEUE) == 1, timeout=5, what="the dead letters")
    assert consumer.backlog() == 0
    dead = consumer.get(DEAD_LETTER_QUEUE)
    assert dead is not None and dead.message_id == str(event.event_id)
    assert dead.headers["x-death"][0]["reason"] == "delivery_limit"
    consumer.ack(dead.delivery_tag)


def test_purge_empties_the_dead_letter_queue(publisher: Publisher, consumer: Consumer, make_event) -> None:
    publisher.publish([make_event(position=i) for i in range(1, 4)])
    for delivery in receive(consumer, 3):
        consumer.reject(delivery.delivery_tag)
    eventually(lambda: consumer.message_count(DEAD_LETTER_QUEUE) == 3, timeout=5, what="the dead letters")

    assert consumer.purge(DEAD_LETTER_QUEUE) == 3

    assert consumer.get(DEAD_LETTER_QUEUE) is None


def test_a_batch_no_queue_takes_is_refused(
    publisher: Publisher, consumer: Consumer, broker_vhost: str, read_broker_url: str, make_event
) -> None:
    # The write side may not touch queues, so the broker's own tool removes the projector's queues.
    for queue in ProjectorPartitions().queues:
        subprocess.run(
            ["rabbitmqctl", "-q", "-p", broker_vhost, "delete_queue", queue], check=True, timeout=60
        )
    try:
        with pytest.raises(PublishFailed, match="unroutable"):
            publisher.publish([make_event(), make_event()])
    finally:
        Consumer(read_broker_url, connection_name="test-redeclare").close()

    # The channel survives a refused batch: once the queue is back, the same publisher delivers.
    publisher.publish([make_event()])
    assert consumer.backlog() == 1


def test_a_consumer_whose_queue_is_deleted_fails_instead_of_waiting_forever(
    consumer: Consumer, broker_vhost: str, read_broker_url: str
) -> None:
    assert consumer.receive(max_count=1, timeout=0.1) == []
    subprocess.run(
        ["rabbitmqctl", "-q", "-p", broker_vhost, "delete_queue", partition_queue(0)], check=True, timeout=60
    )
    try:
        with pytest.raises(BrokerError, match="cancelled"):
            consumer.receive(max_count=1, timeout=1.0)
    finally:
        Consumer(read_broker_url, connection_name="test-redeclare").close()


def test_the_write_side_may_publish_but_not_consume_or_declare_queues(write_broker_url: str) -> None:
    with pytest.raises(BrokerError, match="ACCESS_REFUSED"):
        Consumer(write_broker_url, connection_name="test-write-declares")
    with pytest.raises(BrokerError, match="ACCESS_REFUSED"):
        Consumer(write_broker_url, connection_name="test-write-consumes", declare=False).receive(1, 0.5)


def test_connecting_to_a_broker_that_is_not_there_fails_fast() -> None:
    port = free_port()
    publisher = Publisher(f"amqp://guest:guest@127.0.0.1:{port}/", connection_name="test-nowhere")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        publisher.connect(timeout=5.0)
    assert time.monotonic() - started < 5.0
    with pytest.raises(BrokerUnavailable):
        publisher.publish([])
