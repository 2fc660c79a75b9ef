"""Fixtures of the outbox relay's and messaging's tests: RabbitMQ as each side's user sees it, events built
in a line. The write DB comes from the tier's conftest (migrated once).

RABBITMQ_URL is the vhost as the write-service's user sees it; TEST_READ_RABBITMQ_URL the same vhost as the
read-service's user (which owns the queues) sees it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from cqrs_common.events import EventEnvelope
from cqrs_common.messaging import DEAD_LETTER_QUEUE, PROJECTOR_QUEUE, Consumer, Publisher

DEFAULT_TEST_RABBITMQ_URL = "amqp://write-service:write-service@127.0.0.1:5672/cqrs_test"


@pytest.fixture(scope="session")
def write_broker_url() -> str:
    return os.environ.get("RABBITMQ_URL", DEFAULT_TEST_RABBITMQ_URL)


@pytest.fixture(scope="session")
def read_broker_url(write_broker_url: str) -> str:
    """The read-service's user on the same vhost (infra.sh's development credentials unless given)."""
    if "TEST_READ_RABBITMQ_URL" in os.environ:
        return os.environ["TEST_READ_RABBITMQ_URL"]
    parts = urlsplit(write_broker_url)
    return urlunsplit(
        parts._replace(netloc=f"read-service:read-service@{parts.hostname}:{parts.port or 5672}")
    )


@pytest.fixture(scope="session")
def broker_vhost(write_broker_url: str) -> str:
    return urlsplit(write_broker_url).path.lstrip("/") or "/"


@pytest.fixture
def consumer(read_broker_url: str) -> Iterator[Consumer]:
    """The read side's connection with the topology declared and both queues emptied."""
    with Consumer(read_broker_url, connection_name="test-consumer") as consumer:
        consumer.purge(PROJECTOR_QUEUE)
        consumer.purge(DEAD_LETTER_QUEUE)
        yield consumer


@pytest.fixture
def publisher(write_broker_url: str, consumer: Consumer) -> Iterator[Publisher]:
    """The write side's publisher, connected after the read side declared the queues."""
    publisher = Publisher(write_broker_url, connection_name="test-publisher")
    publisher.connect()
    yield publisher
    publisher.close()


def _make_event(
    event_type: str = "MoneyDeposited",
    *,
    aggregate_id: uuid.UUID | None = None,
    version: int = 1,
    position: int = 1,
    data: dict[str, Any] | None = None,
    correlation_id: str | None = "test-correlation",
) -> EventEnvelope:
    return EventEnvelope(
        event_id=uuid.uuid4(),
        type=event_type,
        aggregate_id=aggregate_id or uuid.uuid4(),
        aggregate_version=version,
        position=position,
        occurred_at=datetime.now(UTC),
        data={"amount": "10.00"} if data is None else data,
        correlation_id=correlation_id,
    )


@pytest.fixture
def make_event() -> Callable[..., EventEnvelope]:
    """Builds an `EventEnvelope` (a deposit of 10.00 on a new account unless told otherwise)."""
    return _make_event
