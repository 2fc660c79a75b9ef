"""Fixtures of the outbox relay's and messaging's tests: RabbitMQ as each side's user sees it, the outbox
filled with plain SQL, relays in this process or as `python -m write_service relay`.

RABBITMQ_URL is the vhost as the write-service's user sees it; TEST_READ_RABBITMQ_URL the same vhost as the
read-service's user (which owns the queues) sees it. WRITE_DATABASE_URL is the write database; the relay and
these fixtures use it without Django (the relay has its own session), so the schema is migrated the way an
operator does it, with `python -m write_service migrate`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import environ
import psycopg2.extras
import pytest

from cqrs_common.events import EventEnvelope, from_wire
from cqrs_common.messaging import DEAD_LETTER_QUEUE, Consumer, Delivery, Publisher
from devkit.polling import poll
from devkit.private_rabbitmq import PrivateRabbitMQ
from devkit.processes import PYTHON, ServiceProcess, free_port, relay_process
from write_service.outbox.relay import Relay, RelaySettings
from write_service.outbox.session import session_open

DEFAULT_TEST_RABBITMQ_URL = "amqp://write-service:write-service@127.0.0.1:5672/cqrs_test"
DEFAULT_TEST_DATABASE_URL = "postgres://cqrs_write:cqrs_write@127.0.0.1:5433/cqrs_write_test"


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
        consumer.purge_queues()
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


# ------------------------------------------------------------------------------------------------ database


@pytest.fixture(scope="session")
def database_url() -> str:
    return os.environ.get("WRITE_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)


@pytest.fixture(scope="session")
def database(database_url: str) -> dict[str, Any]:
    """The write database as a Django DATABASES entry (what the relay is configured with), migrated."""
    subprocess.run(
        [PYTHON, "-m", "write_service", "migrate", "--no-input", "-v", "0"],
        env={**os.environ, "WRITE_DATABASE_URL": database_url},
        check=True,
        timeout=120,
    )
    return environ.Env.db_url_config(database_url)


@pytest.fixture
def outbox(database: dict[str, Any]) -> Iterator[Outbox]:
    """An empty outbox (the events table truncated) and a way to append to it."""
    outbox = Outbox(database)
    outbox.truncate()
    yield outbox
    outbox.close()


class Outbox:
    """The `events` table driven with plain SQL, as committed commands leave it."""

    def __init__(self, database: dict[str, Any]) -> None:
        self.database = database
        self.connection = session_open(database, application_name="test-outbox")

    def close(self) -> None:
        self.connection.close()

    def held(self) -> Outbox:
        """Another connection to the outbox whose appends stay uncommitted until its `connection` commits or
        rolls back: a command still running, holding the positions it took."""
        held = Outbox(self.database)
        held.connection.autocommit = False
        return held

    def truncate(self) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute("TRUNCATE events")

    def append(
        self, count: int, *, accounts: int = 1, correlation_id: str = "test-correlation"
    ) -> list[Appended]:
        """Commits `count` deposits spread round-robin over `accounts` new accounts, in one transaction."""
        aggregate_ids = [uuid.uuid4() for _ in range(accounts)]
        versions = dict.fromkeys(aggregate_ids, 0)
        rows = []
        for i in range(count):
            aggregate_id = aggregate_ids[i % accounts]
            versions[aggregate_id] += 1
            rows.append(
                (
                    uuid.uuid4(),
                    aggregate_id,
                    versions[aggregate_id],
                    json.dumps({"amount": "1.00"}),
                    correlation_id,
                )
            )
        with self.connection.cursor() as cursor:
            returned = psycopg2.extras.execute_values(
                cursor,
                """
                INSERT INTO events (event_id, aggregate_id, aggregate_version, data, correlation_id,
                                    aggregate_type, event_type, schema_version, occurred_at)
                SELECT v.event_id::uuid, v.aggregate_id::uuid, v.version::int, v.data::jsonb,
                       v.correlation_id, 'account', 'MoneyDeposited', 1, clock_timestamp()
                  FROM (VALUES %s) AS v (event_id, aggregate_id, version, data, correlation_id)
                RETURNING position, event_id, aggregate_id, aggregate_version
                """,
                rows,
                page_size=1000,
                fetch=True,
            )
        return sorted(Appended(*row) for row in returned)

    def unpublished(self) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM outbox_unpublished")
            return cursor.fetchone()[0]

    def mark(self) -> int:
        """The relay's high-water mark: every position up to it is published or a gap."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT mark FROM outbox_progress")
            return cursor.fetchone()[0]

    def gaps(self) -> list[int]:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT position FROM outbox_gaps ORDER BY position")
            return [row[0] for row in cursor.fetchall()]

    def wal_position(self) -> str:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()::text")
            return cursor.fetchone()[0]

    def wal_bytes_since(self, position: str) -> int:
        """WAL the whole server wrote since `position` (a `wal_position`)."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)::bigint", (position,))
            return cursor.fetchone()[0]


@dataclass(frozen=True, order=True)
class Appended:
    position: int
    event_id: uuid.UUID
    aggregate_id: uuid.UUID
    aggregate_version: int


def receive(consumer: Consumer, expected: int, timeout: float = 5.0) -> list[Delivery]:
    """Receives until `expected` messages arrived (or time is up), acknowledging none; returns them."""
    deliveries: list[Delivery] = []

    def all_arrived() -> bool:
        # Each receive waits up to half a second for the next messages: no pause needed between them.
        deliveries.extend(consumer.receive(max_count=expected - len(deliveries), timeout=0.5))
        return len(deliveries) >= expected

    poll(all_arrived, timeout, interval=0)
    return deliveries


def per_account(events: list[Any]) -> dict[str, list[tuple[int, int]]]:
    """Each account's events as (position, version) in the order received. The projector's queues are
    partitions by account: order holds within an account, not across accounts in different partitions."""
    ordered: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for event in events:
        ordered[str(event.aggregate_id)].append((event.position, event.aggregate_version))
    return dict(ordered)


def receive_events(consumer: Consumer, expected: int, timeout: float = 20.0) -> list[EventEnvelope]:
    """Receives and acknowledges until `expected` messages arrived (or time is up); returns their events."""
    deliveries = receive(consumer, expected, timeout)
    if deliveries:
        consumer.ack(deliveries[-1].delivery_tag, multiple=True)
    return [from_wire(delivery.body) for delivery in deliveries]


# --------------------------------------------------------------------------------------------------- relays


@pytest.fixture
def relay_settings(database: dict[str, Any], write_broker_url: str) -> RelaySettings:
    return RelaySettings(database=database, broker_url=write_broker_url, name="test-relay", max_backoff=0.5)


@pytest.fixture
def start_relay(relay_settings: RelaySettings) -> Iterator[Callable[..., Relay]]:
    """Starts relays in threads of this process (`start_relay(poll_interval=...)`); all stop at teardown."""
    running: list[tuple[Relay, threading.Thread]] = []

    def start(**overrides: Any) -> Relay:
        relay = Relay(dataclasses.replace(relay_settings, **overrides))
        thread = threading.Thread(target=relay.run, name="relay", daemon=True)
        thread.start()
        running.append((relay, thread))
        return relay

    yield start
    for relay, thread in running:
        relay.stopper.request()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the relay did not stop"


@pytest.fixture
def relay_processes(database_url: str, write_broker_url: str) -> Iterator[Callable[..., ServiceProcess]]:
    """Starts `python -m write_service relay` processes (`relay_processes(name)`); all killed at teardown."""
    started: list[ServiceProcess] = []

    def start(name: str, **env: str) -> ServiceProcess:
        process = relay_process(
            name,
            {
                "WRITE_DATABASE_URL": database_url,
                "RABBITMQ_URL": write_broker_url,
                "RELAY_METRICS_PORT": str(free_port()),
                "RELAY_MAX_BACKOFF_SECONDS": "0.5",
                **env,
            },
        ).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def private_broker() -> Iterator[PrivateRabbitMQ]:
    """A RabbitMQ node of this test's own, to stop and start at will; removed afterwards."""
    node = PrivateRabbitMQ().start()
    yield node
    node.destroy()
