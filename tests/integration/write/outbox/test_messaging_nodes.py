"""A broker URL that names several nodes (a cluster): clients take the nodes in turn, so a client whose node
is gone connects to another. Here one "node" is a port nothing listens on, the other the real broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import pytest

from cqrs_common.events import EventEnvelope
from cqrs_common.messaging import BrokerUnavailable, Consumer, Publisher
from cqrs_common.messaging.connection import connection_parameters, node_urls
from devkit.processes import free_port


def _with_a_dead_node_first(url: str) -> str:
    parts = urlsplit(url)
    dead = parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{free_port()}")
    return f"{urlunsplit(dead)},{url}"


def test_nodes_are_taken_in_turn() -> None:
    url = "amqp://u:p@rabbitmq-1/cqrs, amqp://u:p@rabbitmq-2/cqrs,amqp://u:p@rabbitmq-3/cqrs"
    assert [urlsplit(node).hostname for node in node_urls(url)] == ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"]
    firsts = [connection_parameters(url, connection_name="t")[0].host for _ in range(4)]
    assert firsts == ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3", "rabbitmq-1"]
    with pytest.raises(ValueError):
        node_urls(" , ")


def test_a_consumer_connects_past_a_node_that_is_down(read_broker_url: str) -> None:
    url = _with_a_dead_node_first(read_broker_url)
    for _ in range(2):  # starting at the dead node, then at the live one
        with Consumer(url, connection_name="test-nodes-consumer") as consumer:
            assert consumer.backlog() >= 0


def test_a_publisher_that_found_its_node_down_reconnects_to_the_next(
    write_broker_url: str, consumer: Consumer, make_event: Callable[..., EventEnvelope]
) -> None:
    url = _with_a_dead_node_first(write_broker_url)
    outcomes = []
    for _ in range(4):
        publisher = Publisher(url, connection_name="test-nodes-publisher")
        try:
            publisher.connect(timeout=5.0)
            event = make_event(
                "AccountOpened", aggregate_id=uuid.uuid4(), data={"owner": "n", "currency": "EUR"}
            )
            publisher.publish([event])
            outcomes.append("published")
        except BrokerUnavailable:
            outcomes.append("unavailable")
        finally:
            publisher.close()
    # Each new publisher starts at the next node: never twice in a row at the dead one.
    assert outcomes in (["unavailable", "published"] * 2, ["published", "unavailable"] * 2), outcomes
    received = consumer.receive(10, timeout=5)
    assert len(received) == 2
