"""deploy/compose/rabbitmq (mounted by Compose, generated into Kubernetes): the broker the containers get must
be the one the code and the native set-up expect, or the services' own declarations would fail against it."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from packaging_support import REPO, generated

from cqrs_common import messaging

RABBITMQ = REPO / "deploy" / "compose" / "rabbitmq"


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    return json.loads((RABBITMQ / "definitions.json").read_text())


class RecordingChannel:
    """Stands in for a broker channel: records what `declare_topology` declares (no broker offline)."""

    def __init__(self) -> None:
        self.exchanges: dict[str, dict[str, Any]] = {}
        self.queues: dict[str, dict[str, Any]] = {}
        self.bindings: set[tuple[str, str, str]] = set()

    def exchange_declare(
        self,
        exchange: str,
        exchange_type: str = "direct",
        durable: bool = False,
        arguments: dict | None = None,
        **_: Any,
    ) -> None:
        self.exchanges[exchange] = {
            "type": exchange_type,
            "durable": durable,
            "arguments": dict(arguments or {}),
        }

    def exchange_bind(self, destination: str, source: str, routing_key: str = "", **_: Any) -> None:
        self.bindings.add((source, destination, routing_key))

    def queue_declare(
        self, queue: str, durable: bool = False, arguments: dict | None = None, **_: Any
    ) -> None:
        self.queues[queue] = {"durable": durable, "arguments": dict(arguments or {})}

    def queue_bind(self, queue: str, exchange: str, routing_key: str | None = None, **_: Any) -> None:
        self.bindings.add((exchange, queue, routing_key or ""))


@pytest.fixture(scope="module")
def declared() -> RecordingChannel:
    channel = RecordingChannel()
    messaging.declare_topology(channel)  # type: ignore[arg-type]
    # The reporting subscriber's queues, under the name its command runs by default (CONTRACT.md).
    messaging.reporting_queues("daily-totals").declare(channel)  # type: ignore[arg-type]
    return channel


def test_the_definitions_declare_exactly_the_topology_the_code_declares(
    definitions: dict[str, Any], declared: RecordingChannel
) -> None:
    exchanges = {
        e["name"]: {"type": e["type"], "durable": e["durable"], "arguments": e["arguments"]}
        for e in definitions["exchanges"]
    }
    queues = {
        q["name"]: {"durable": q["durable"], "arguments": q["arguments"]} for q in definitions["queues"]
    }
    bindings = {(b["source"], b["destination"], b["routing_key"]) for b in definitions["bindings"]}
    assert exchanges == declared.exchanges
    assert queues == declared.queues, "a different argument would make the projector's declaration fail"
    assert bindings == declared.bindings
    assert {
        e["vhost"] for e in [*definitions["exchanges"], *definitions["queues"], *definitions["bindings"]]
    } == {"cqrs"}


def test_the_topology_is_the_contracts(declared: RecordingChannel) -> None:
    contract = (REPO / "docs" / "CONTRACT.md").read_text()
    for name in [*declared.exchanges, *declared.queues]:
        assert f"`{name}`" in contract, name
    partitions = [q for q in declared.queues if q.startswith("read-service.projector.p")]
    assert len(partitions) == messaging.DEFAULT_PARTITIONS
    for queue in partitions:
        assert declared.queues[queue]["arguments"]["x-queue-type"] == "quorum"
        assert declared.queues[queue]["arguments"]["x-single-active-consumer"] is True


def native_permissions() -> dict[str, tuple[str, str, str]]:
    """The set_permissions calls of deploy/local/infra.sh, with its variables substituted."""
    infra = (REPO / "deploy" / "local" / "infra.sh").read_text()
    variables = dict(re.findall(r"local (\w+)='([^']*)'", infra))
    users = {
        "RABBITMQ_WRITE_USER": re.search(
            r'RABBITMQ_WRITE_USER="\$\{RABBITMQ_WRITE_USER:-([^}]+)}"', infra
        ).group(1),
        "RABBITMQ_READ_USER": re.search(
            r'RABBITMQ_READ_USER="\$\{RABBITMQ_READ_USER:-([^}]+)}"', infra
        ).group(1),
        "RABBITMQ_REPORTING_USER": re.search(
            r'RABBITMQ_REPORTING_USER="\$\{RABBITMQ_REPORTING_USER:-([^}]+)}"', infra
        ).group(1),
    }
    found = {}
    calls = re.findall(r'set_permissions -p "\$vhost" "\$(\w+)" \\\n\s+(.+)\n', infra)
    for user_var, rest in calls:
        regexes = [variables[t[2:-1]] if t.startswith('"$') else t.strip("'") for t in rest.split()]
        found[users[user_var]] = tuple(regexes)
    assert len(found) == 3, "infra.sh's permissions could not be read"
    return found


def test_users_have_the_native_least_privilege_permissions(definitions: dict[str, Any]) -> None:
    permissions = {p["user"]: (p["configure"], p["write"], p["read"]) for p in definitions["permissions"]}
    for user, regexes in native_permissions().items():
        assert permissions[user] == regexes, user
    services = {"write-service", "read-service", "reporting"}
    for user in definitions["users"]:
        assert (user["tags"] == []) == (user["name"] in services), "only the operator login has a tag"


def password_matches(user: dict[str, Any], password: str) -> bool:
    """rabbit_password_hashing_sha256: base64(salt + sha256(salt + password)), with a 4-byte salt."""
    assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    raw = base64.b64decode(user["password_hash"])
    salt, digest = raw[:4], raw[4:]
    return hashlib.sha256(salt + password.encode()).digest() == digest


def env_example() -> dict[str, str]:
    lines = (REPO / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^\w+=", line))


def test_the_password_hashes_match_env_example(definitions: dict[str, Any]) -> None:
    users = {u["name"]: u for u in definitions["users"]}
    example = env_example()
    assert password_matches(users["write-service"], example["RABBITMQ_WRITE_PASSWORD"])
    assert password_matches(users["read-service"], example["RABBITMQ_READ_PASSWORD"])
    assert password_matches(users["reporting"], example["RABBITMQ_REPORTING_PASSWORD"])
    assert password_matches(users["admin"], example["RABBITMQ_ADMIN_PASSWORD"])
    assert not password_matches(users["admin"], example["RABBITMQ_WRITE_PASSWORD"])


def test_the_kubernetes_secrets_carry_the_passwords_of_the_definitions(
    definitions: dict[str, Any], base_objects: tuple[dict[str, Any], ...]
) -> None:
    users = {u["name"]: u for u in definitions["users"]}
    for side in ("write-side", "read-side", "reporting"):
        secret = generated(base_objects, "Secret", side)
        url = urlsplit(base64.b64decode(secret["data"]["RABBITMQ_URL"]).decode())
        assert url.hostname == "rabbitmq" and url.port == 5672 and url.path == "/cqrs"
        assert password_matches(users[url.username], url.password or "")


def test_compose_urls_use_the_definitions_users(compose: dict[str, Any], definitions: dict[str, Any]) -> None:
    users = {u["name"]: u for u in definitions["users"]}
    for process in ("write-service", "relay", "read-service", "projector"):
        url = urlsplit(compose["services"][process]["environment"]["RABBITMQ_URL"])
        assert url.path == "/cqrs" and url.hostname == "rabbitmq"
        assert password_matches(users[url.username], url.password or "")


def test_the_broker_loads_the_definitions_and_its_plugins() -> None:
    conf = dict(
        line.split(" = ", 1)
        for line in (RABBITMQ / "rabbitmq.conf").read_text().splitlines()
        if " = " in line
    )
    assert conf["load_definitions"] == "/etc/rabbitmq/definitions.json"
    assert conf["prometheus.tcp.port"] == "15692"
    compose_mounts = (REPO / "docker-compose.yml").read_text()
    for name in ("rabbitmq.conf", "enabled_plugins", "definitions.json"):
        assert f"./deploy/compose/rabbitmq/{name}:/etc/rabbitmq/{name}:ro" in compose_mounts
    plugins = Path(RABBITMQ / "enabled_plugins").read_text().strip()
    # The consistent-hash exchange splits the projector's events into partitions (docs/decisions/0008).
    assert plugins == "[rabbitmq_management,rabbitmq_prometheus,rabbitmq_consistent_hash_exchange]."
