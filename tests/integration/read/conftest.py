"""Fixtures of the read side's integration tests: the read DB migrated once, events built in a line.

Runs with `--ds=read_service.settings` against the database in READ_DATABASE_URL (created by infra.sh; no
test-database creation) and, for the projector tests, the vhost in RABBITMQ_URL.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from cqrs_common.events import SCHEMA_VERSIONS, EventEnvelope
from cqrs_common.messaging import DEAD_LETTER_QUEUE, Consumer, Delivery, Publisher
from devkit.processes import free_port
from devkit.replication import replica_reset
from read_service.projections.projector import Projector

_positions = itertools.count(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Benchmarks run only when asked for (`-m bench`): they take tens of seconds and assert no timing."""
    if "bench" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="benchmark: run with -m bench")
    here = Path(__file__).parent
    for item in items:
        if "bench" in item.keywords and here in item.path.parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def django_db_setup(django_db_blocker: Any) -> None:
    """The database exists already (deploy/local/infra.sh); bring its schema up to date."""
    with django_db_blocker.unblock():
        call_command("migrate", verbosity=0, interactive=False)


def make_event(
    event_type: str,
    account_id: uuid.UUID,
    version: int,
    data: dict[str, Any] | None = None,
    *,
    occurred_at: datetime | None = None,
    correlation_id: str | None = "test-correlation",
) -> EventEnvelope:
    """An event as the write side emits it now: at its type's current schema version (what every reader
    upcasts to, so it is what the apply step is given)."""
    return EventEnvelope(
        event_id=uuid.uuid4(),
        type=event_type,
        aggregate_id=account_id,
        aggregate_version=version,
        position=next(_positions),
        occurred_at=occurred_at or datetime.now(UTC),
        data=data or {},
        schema_version=SCHEMA_VERSIONS.get(event_type, 1),
        correlation_id=correlation_id,
    )


class AccountHistory:
    """Builds the consecutive events of one account, as the write side would emit them."""

    def __init__(self, owner: str = "alice", currency: str = "EUR", start: datetime | None = None) -> None:
        self.account_id = uuid.uuid4()
        self.version = 0
        self.clock = start or datetime.now(UTC) - timedelta(minutes=5)
        self.owner = owner
        self.currency = currency

    def next(self, event_type: str, **data: Any) -> EventEnvelope:
        self.version += 1
        self.clock += timedelta(seconds=1)
        return make_event(event_type, self.account_id, self.version, data, occurred_at=self.clock)

    def opened(self) -> EventEnvelope:
        return self.next("AccountOpened", owner=self.owner, currency=self.currency)

    def deposited(self, amount: str, reference: str | None = None) -> EventEnvelope:
        return self.next("MoneyDeposited", amount=amount, reference=reference)

    def withdrawn(self, amount: str) -> EventEnvelope:
        return self.next("MoneyWithdrawn", amount=amount)

    def closed(self) -> EventEnvelope:
        return self.next("AccountClosed")


def transfer(
    source: AccountHistory, target: AccountHistory, amount: str
) -> tuple[EventEnvelope, EventEnvelope]:
    transfer_id = str(uuid.uuid4())
    debit = source.next(
        "TransferDebited", transfer_id=transfer_id, to_account=str(target.account_id), amount=amount
    )
    credit = target.next(
        "TransferCredited", transfer_id=transfer_id, from_account=str(source.account_id), amount=amount
    )
    return debit, credit


@pytest.fixture
def account() -> Callable[..., AccountHistory]:
    return AccountHistory


@pytest.fixture
def empty_replica(transactional_db: None) -> None:
    """An empty replicated events table, for a test that runs the projector command: its replication
    fallback would otherwise fill the read model with what earlier tests wrote on the write side."""
    database = django_settings.DATABASES["default"]
    replica_reset(f"postgres://{database['HOST']}:{database['PORT'] or 5432}/{database['NAME']}")


# ---------------------------------------------------------------------------------------------- RabbitMQ

DEFAULT_TEST_RABBITMQ_URL = "amqp://read-service:read-service@127.0.0.1:5672/cqrs_test"


@pytest.fixture(scope="session")
def broker_url() -> str:
    """The test vhost as the read-service user sees it (it owns the queues, may publish to cqrs.events)."""
    return os.environ.get("RABBITMQ_URL", DEFAULT_TEST_RABBITMQ_URL)


@pytest.fixture
def broker(broker_url: str, settings: Any) -> Iterator[Consumer]:
    """A connection with the topology declared and both queues emptied; the projector uses the same URL."""
    settings.RABBITMQ_URL = broker_url
    with Consumer(broker_url, connection_name="test-broker") as consumer:
        consumer.purge_queues()
        consumer.purge(DEAD_LETTER_QUEUE)
        yield consumer


@pytest.fixture
def publish(broker_url: str, broker: Consumer) -> Iterator[Callable[..., None]]:
    """Publishes events as the relay does (Publisher, confirms)."""
    publisher = Publisher(broker_url, connection_name="test-publisher")
    publisher.connect()
    yield lambda *events: publisher.publish(list(events))
    publisher.close()


@pytest.fixture
def publish_raw(broker: Consumer) -> Callable[..., None]:
    """Publishes any body with any routing key to cqrs.events (poison messages), confirmed."""

    def publish(
        body: bytes, routing_key: str = "account.MoneyDeposited", message_id: str | None = None
    ) -> None:
        broker.republish(
            Delivery(
                delivery_tag=0,
                body=body,
                routing_key=routing_key,
                exchange="",
                redelivered=False,
                message_id=message_id or str(uuid.uuid4()),
                content_type="application/json",
            )
        )

    return publish


class HostilePublisher:
    """Publishes any body with any AMQP properties to cqrs.events, confirmed: what a broken or hostile
    publisher could send. pika directly, because the project's own publisher only builds valid messages."""

    def __init__(self, url: str) -> None:
        import pika

        self._pika = pika
        self._connection = pika.BlockingConnection(pika.URLParameters(url))
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()
        self._batch_channel: Any = None

    def publish(self, body: bytes, routing_key: str = "account.MoneyDeposited", **properties: Any) -> None:
        properties.setdefault("message_id", str(uuid.uuid4()))
        properties.setdefault("content_type", "application/json")
        properties = {key: value for key, value in properties.items() if value is not None}
        self._channel.basic_publish(
            "cqrs.events", routing_key, body, self._pika.BasicProperties(**properties), mandatory=True
        )

    def publish_batch(self, messages: Iterable[tuple[bytes, str, dict[str, Any]]]) -> None:
        """(body, routing key, properties) each, without waiting for a confirm per message: one round trip
        at the end makes sure the broker has read them all (a test that counts what arrives sees a loss)."""
        if self._batch_channel is None:
            self._batch_channel = self._connection.channel()
        for body, routing_key, properties in messages:
            properties = {key: value for key, value in properties.items() if value is not None}
            self._batch_channel.basic_publish(
                "cqrs.events", routing_key, body, self._pika.BasicProperties(**properties)
            )
        self._batch_channel.basic_qos(
            prefetch_count=0
        )  # synchronous: the broker has handled what came before

    def close(self) -> None:
        if self._connection.is_open:
            self._connection.close()


@pytest.fixture
def hostile_publisher(broker_url: str, broker: Consumer) -> Iterator[HostilePublisher]:
    publisher = HostilePublisher(broker_url)
    yield publisher
    publisher.close()


class RunningProjector:
    """The projector loop in a thread, as the management command runs it; `stop()` is SIGTERM."""

    def __init__(self, broker_url: str, batch_size: int = 100) -> None:
        self._stop = threading.Event()
        projector = Projector(
            lambda: Consumer(broker_url, connection_name="test-projector", prefetch=200),
            batch_size=batch_size,
            receive_timeout=0.2,
        )
        self._thread = threading.Thread(target=projector.run, args=(self._stop,), daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """False once the loop has ended without being stopped: as the process, it would have exited."""
        return self._thread.is_alive() or self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "projector did not stop"


@pytest.fixture
def start_projector(
    broker_url: str, broker: Consumer, transactional_db: None
) -> Iterator[Callable[[], RunningProjector]]:
    started: list[RunningProjector] = []

    def start() -> RunningProjector:
        started.append(RunningProjector(broker_url))
        return started[-1]

    yield start
    for projector in started:
        projector.stop()


@contextlib.contextmanager
def projector_command(
    broker_url: str, *, log_level: str = "INFO", capture: bool = False, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen, int]]:
    """`python -m read_service projector` as supervisor runs it, on this tier's broker and database, and the
    port of its /metrics; its output piped when `capture`, else discarded; `env` adds settings. Killed on
    leaving if it still runs (a test that stops it itself checks how it stopped)."""
    port = free_port()
    own = {"RABBITMQ_URL": broker_url, "SERVICE_NAME": "projector", "LOG_LEVEL": log_level, **(env or {})}
    environment = {**os.environ, **own}
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "read_service", "projector", "--metrics-port", str(port)],
        env=environment,
        stdout=output,
        stderr=subprocess.STDOUT if capture else subprocess.DEVNULL,
    )
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
