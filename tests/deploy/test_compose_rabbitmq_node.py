"""deploy/compose/rabbitmq booted for real: a private RabbitMQ node (never the shared one) with the
containers' rabbitmq.conf, plugins and definitions. The services' own code then connects as each side's user:
the read side declares its topology over the imported one, the write side publishes, least privilege holds."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from packaging_support import REPO

from cqrs_common import messaging
from cqrs_common.events import EventEnvelope
from devkit.messages import message, publish
from devkit.private_rabbitmq import PrivateRabbitMQ
from devkit.processes import free_port

RABBITMQ = REPO / "deploy" / "compose" / "rabbitmq"

pytestmark = pytest.mark.slow


class ContainerConfiguredRabbitMQ(PrivateRabbitMQ):
    """A private node configured by the files Compose mounts; only paths and ports differ (free, loopback)."""

    def __init__(self) -> None:
        super().__init__()
        self.management_port, self.prometheus_port = free_port(), free_port()
        conf = (RABBITMQ / "rabbitmq.conf").read_text()
        replacements = {
            "load_definitions": str(self.base / "definitions.json"),
            "listeners.tcp.default": f"127.0.0.1:{self.port}",
            "management.tcp.port": str(self.management_port),
            "prometheus.tcp.port": str(self.prometheus_port),
        }
        for key, value in replacements.items():
            conf, count = re.subn(rf"^{re.escape(key)} = .*$", f"{key} = {value}", conf, flags=re.M)
            assert count == 1, f"rabbitmq.conf sets {key} once"
        conf += "management.tcp.ip = 127.0.0.1\nprometheus.tcp.ip = 127.0.0.1\n"
        (self.base / "rabbitmq.conf").write_text(conf)
        shutil.copy(RABBITMQ / "enabled_plugins", self.base / "enabled_plugins")
        shutil.copy(RABBITMQ / "definitions.json", self.base / "definitions.json")
        if os.geteuid() == 0:
            owner = pwd.getpwnam("rabbitmq")
            for path in [self.base, *self.base.rglob("*")]:
                os.chown(path, owner.pw_uid, owner.pw_gid)

    def url_for(self, user: str, password: str) -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/cqrs"


def env_example() -> dict[str, str]:
    lines = (REPO / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^\w+=", line))


@pytest.fixture(scope="module")
def node() -> Iterator[ContainerConfiguredRabbitMQ]:
    broker = ContainerConfiguredRabbitMQ()
    try:
        yield broker.start()
    finally:
        broker.destroy()


@pytest.fixture(scope="module")
def urls(node: ContainerConfiguredRabbitMQ) -> dict[str, str]:
    example = env_example()
    return {
        "write": node.url_for("write-service", example["RABBITMQ_WRITE_PASSWORD"]),
        "read": node.url_for("read-service", example["RABBITMQ_READ_PASSWORD"]),
    }


def event() -> EventEnvelope:
    return EventEnvelope(
        event_id=uuid.uuid4(),
        type="AccountOpened",
        aggregate_id=uuid.uuid4(),
        aggregate_version=1,
        position=1,
        occurred_at=datetime.now(UTC),
        data={"owner": "alice", "currency": "EUR"},
    )


def test_the_services_declare_and_use_the_imported_topology(urls: dict[str, str]) -> None:
    consumer = messaging.Consumer(urls["read"], connection_name="deploy-check-projector")  # declares it all
    publisher = messaging.Publisher(urls["write"], connection_name="deploy-check-relay")
    try:
        publisher.connect()
        sent = event()
        publisher.publish([sent])  # mandatory: refused unless a queue takes it
        deliveries = consumer.receive(10, timeout=10)
        assert [d.message_id for d in deliveries] == [str(sent.event_id)]
        consumer.ack(deliveries[-1].delivery_tag, multiple=True)
    finally:
        publisher.close()
        consumer.close()


def test_the_write_side_cannot_consume_the_read_sides_queue(urls: dict[str, str]) -> None:
    with pytest.raises(messaging.BrokerError):
        consumer = messaging.Consumer(urls["write"], connection_name="deploy-check-intruder", declare=False)
        try:
            consumer.receive(1, timeout=2)
        finally:
            consumer.close()


def test_the_prometheus_plugin_serves_metrics(node: ContainerConfiguredRabbitMQ) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{node.prometheus_port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert b"rabbitmq_" in response.read()


def test_the_broker_refuses_a_message_over_128_kib(urls: dict[str, str]) -> None:
    # Under the limit it is taken (a body the projector will dead-letter as too large, but the broker's
    # business is only its size); over it, the broker closes the publisher's channel.
    publish(urls["write"], message(b"x" * 100_000, "AccountOpened", str(uuid.uuid4())))
    with pytest.raises(messaging.BrokerError, match="larger than configured max size 131072"):
        publish(urls["write"], message(b"x" * 140_000, "AccountOpened", str(uuid.uuid4())))
