"""deploy/compose/rabbitmq-cluster.yml, checked offline: the three-node cluster's override renders from a
fresh clone, changes only the broker and the services' broker URLs, and keeps each side on its own broker
user."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from packaging_support import REPO
from test_compose import env_example, render

CLUSTER_OVERRIDE = "deploy/compose/rabbitmq-cluster.yml"
NODES = ["rabbitmq", "rabbitmq-2", "rabbitmq-3"]
BROKER_USERS = {
    "write-service": "write-service",
    "relay": "write-service",
    "read-service": "read-service",
    "projector": "read-service",
    "reporting": "reporting",
}


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return render("docker-compose.yml")["services"]


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    return render("docker-compose.yml", CLUSTER_OVERRIDE)["services"]


def test_a_fresh_clone_renders_it_with_the_documented_defaults(tmp_path: Path) -> None:
    (tmp_path / "empty.env").write_text("")
    clean = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    files = ("docker-compose.yml", CLUSTER_OVERRIDE)
    assert render(*files, env_file=tmp_path / "empty.env", env=clean) == render(*files, env=clean)


def test_every_variable_it_interpolates_is_in_env_example_with_that_default() -> None:
    text = (REPO / CLUSTER_OVERRIDE).read_text()
    example = env_example()
    for name, default in re.findall(r"\$\{(\w+):-([^}]*)\}", text):
        assert example.get(name) == default, name


def test_the_services_broker_url_lists_the_three_nodes_with_their_own_user(
    base: dict[str, Any], cluster: dict[str, Any]
) -> None:
    for service, user in BROKER_USERS.items():
        nodes = [urlsplit(url) for url in cluster[service]["environment"]["RABBITMQ_URL"].split(",")]
        assert [(n.hostname, n.port, n.path, n.username) for n in nodes] == [
            (node, 5672, "/cqrs", user) for node in NODES
        ], service
        # The first node is the one the base file names, with the same credentials; nothing else changes.
        assert (
            cluster[service]["environment"]["RABBITMQ_URL"].split(",")[0]
            == (base[service]["environment"]["RABBITMQ_URL"])
        )
        rest = {k: v for k, v in cluster[service]["environment"].items() if k != "RABBITMQ_URL"}
        assert rest == {k: v for k, v in base[service]["environment"].items() if k != "RABBITMQ_URL"}


def test_the_nodes_share_one_configuration_and_a_cookie_and_find_each_other(cluster: dict[str, Any]) -> None:
    conf = (REPO / "deploy/compose/rabbitmq-cluster/cluster.conf").read_text()
    assert re.findall(r"classic_config\.nodes\.\d+ = rabbit@(\S+)", conf) == NODES
    cookies = {cluster[node]["environment"]["RABBITMQ_ERLANG_COOKIE"] for node in NODES}
    assert cookies == {env_example()["RABBITMQ_ERLANG_COOKIE"]}
    mounts = {node: dict(_mount(volume) for volume in cluster[node]["volumes"]) for node in NODES}
    for node in NODES:
        assert cluster[node]["hostname"] == node
        assert mounts[node]["/etc/rabbitmq/conf.d/20-cluster.conf"].endswith("rabbitmq-cluster/cluster.conf")
        assert mounts[node]["/etc/rabbitmq/rabbitmq.conf"].endswith("rabbitmq/rabbitmq.conf")
        assert set(cluster[node]["networks"]) == set(cluster["rabbitmq"]["networks"])
    # Each node keeps its own data.
    assert len({mounts[node]["/var/lib/rabbitmq"] for node in NODES}) == 3


def test_the_extra_nodes_and_the_queue_growing_step_are_behind_the_cluster_profile(
    cluster: dict[str, Any],
) -> None:
    profiled = {name for name, svc in cluster.items() if "cluster" in svc.get("profiles", [])}
    assert profiled == {"rabbitmq-2", "rabbitmq-3", "rabbitmq-cluster-init"}
    init = cluster["rabbitmq-cluster-init"]
    assert init["restart"] == "no"
    assert {name: dep["condition"] for name, dep in init["depends_on"].items()} == {
        node: "service_healthy" for node in NODES
    }


def _mount(volume: str | dict[str, str]) -> tuple[str, str]:
    """(target, source) of a volume as Compose v2 (a mapping) or v1 (`source:target[:mode]`) renders it."""
    if isinstance(volume, dict):
        return volume["target"], volume["source"]
    source, target = volume.split(":")[:2]
    return target, source
