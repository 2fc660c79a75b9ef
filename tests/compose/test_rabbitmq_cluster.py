"""RabbitMQ as a three-node cluster (deploy/compose/rabbitmq-cluster.yml, profile `cluster`) loses the node
that leads the projector's quorum queue while commands keep coming: publishing and consuming carry on through
the other two nodes, the node comes back and rejoins, and the read side ends exact, with every event applied
once. The pause the loss caused on the broker path is measured and printed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests

from devkit.metrics import sample_at
from devkit.polling import eventually
from tests.compose.conftest import ComposeSystem

CLUSTER = {
    "COMPOSE_FILE": "docker-compose.yml:deploy/compose/rabbitmq-cluster.yml",
    "COMPOSE_PROFILES": "cluster",
}
NODES = ("rabbitmq", "rabbitmq-2", "rabbitmq-3")
QUEUE = "read-service.projector.p0"  # a partition of the projector's; all are declared alike
# Two more nodes to start, then a node's loss and return under load: more than a Compose test's usual time.
pytestmark = pytest.mark.timeout(900)


def rabbitmq_cli(system: ComposeSystem, node: str, *command: str) -> str:
    """A RabbitMQ CLI command run in `node`'s container, with the cluster's cookie (node.sh)."""
    run = system.compose(
        "exec", "-T", node, "sh", "/etc/rabbitmq/cluster/node.sh", *command, check=False, **CLUSTER
    )
    assert run.returncode == 0, f"{' '.join(command)} on {node}: {run.stdout}{run.stderr}"
    return run.stdout


def running_nodes(system: ComposeSystem, via: str) -> set[str]:
    status = rabbitmq_cli(system, via, "rabbitmq-diagnostics", "-q", "cluster_status", "--formatter", "json")
    return set(json.loads(status)["running_nodes"])


def queue_members(system: ComposeSystem, via: str) -> dict[str, str]:
    """Member node -> its Raft state (leader, follower, ...) for the projector's queue."""
    status = rabbitmq_cli(
        system, via, "rabbitmq-queues", "-q", "quorum_status", QUEUE, "--vhost", "cqrs", "--formatter", "json"
    )
    return {member["Node Name"]: member["Raft State"] for member in json.loads(status)}


@dataclass
class Load:
    """Deposits into a few accounts from a thread, as fast as one client goes, until stopped."""

    system: ComposeSystem
    accounts: list
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with requests.Session() as http:
            while not self._stop.is_set():
                account = self.accounts[self.sent % len(self.accounts)]
                answer = self.system.command(http, f"/api/accounts/{account}/deposit", {"amount": "1.00"})
                if answer.status_code == 200:
                    self.sent += 1
                else:
                    self.failures.append(f"{answer.status_code} {answer.text[:200]}")
                time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Timeline:
    """The broker path's applied events and the relay's confirmed ones, sampled while the load runs."""

    system: ComposeSystem
    points: list[tuple[float, float, float]] = field(default_factory=list)  # (time, applied, published)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            applied = self.system.applied("broker")
            published = sample_at(f"{self.system.relay_url}/metrics", "cqrs_events_published_total") or 0.0
            self.points.append((time.monotonic(), applied, published))
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()

    def between(self, start: float, end: float) -> tuple[float, float]:
        inside = [p for p in self.points if start <= p[0] <= end]
        return inside[-1][1] - inside[0][1], inside[-1][2] - inside[0][2]

    def longest_pause(self) -> float:
        """The longest time the broker path applied nothing while events were coming."""
        longest, since = 0.0, self.points[0][0]
        for (_, applied, _), (at, later, _) in zip(self.points, self.points[1:], strict=False):
            if later > applied:
                longest, since = max(longest, at - since), at
        return longest


@pytest.fixture(scope="module")
def cluster(system: ComposeSystem) -> Iterator[ComposeSystem]:
    """The running system switched to the three-node cluster; the app services get the nodes' list."""
    system.compose("up", timeout=900, **CLUSTER)
    yield system


def test_the_three_nodes_form_one_cluster_and_the_queue_lives_on_each(cluster: ComposeSystem) -> None:
    expected = {f"rabbit@{node}" for node in NODES}
    eventually(
        lambda: running_nodes(cluster, "rabbitmq") == expected, timeout=120, interval=2, what="3 nodes"
    )
    members = queue_members(cluster, "rabbitmq")
    assert set(members) == expected, members
    assert sorted(members.values()).count("leader") == 1, members


def test_prometheus_scrapes_every_node_of_the_cluster(cluster: ComposeSystem, http: requests.Session) -> None:
    """Compose's Prometheus finds the nodes by name (prometheus.compose.yml): the two the profile adds join
    the first in both RabbitMQ jobs, each up."""
    expected = {f"{node}:15692" for node in NODES}

    def scraped() -> dict[str, set[str]] | None:
        answer = http.get(f"{cluster.prometheus}/api/v1/targets", params={"state": "active"}, timeout=10)
        assert answer.status_code == 200, answer.text
        up: dict[str, set[str]] = {"rabbitmq": set(), "rabbitmq-queues": set()}
        for target in answer.json()["data"]["activeTargets"]:
            job = target["labels"]["job"]
            if job in up and target["health"] == "up":
                up[job].add(target["labels"]["instance"])
        return up if all(instances == expected for instances in up.values()) else None

    eventually(scraped, timeout=120, interval=2, what=f"Prometheus scraping {sorted(expected)}")


def test_losing_the_queue_leaders_node_under_load_loses_and_doubles_nothing(
    cluster: ComposeSystem, http: requests.Session
) -> None:
    accounts = [cluster.open_account(http, f"cluster-{i}") for i in range(4)]
    cluster.assert_read_side_exact(http)
    dead_lettered = cluster.projection(http)["dead_lettered"]
    leader_node = next(
        node for node, state in queue_members(cluster, "rabbitmq").items() if state == "leader"
    )
    victim = leader_node.removeprefix("rabbit@")
    witness = next(node for node in NODES if node != victim)

    load, timeline = Load(cluster, accounts), Timeline(cluster)
    threads = [threading.Thread(target=load.run), threading.Thread(target=timeline.run)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(5)
        killed_at = time.monotonic()
        cluster.compose("kill", victim, **CLUSTER)
        time.sleep(20)
        restarted_at = time.monotonic()
        cluster.compose("start", victim, **CLUSTER)
        eventually(
            lambda: len(running_nodes(cluster, witness)) == 3, timeout=180, interval=2, what="the node back"
        )
        time.sleep(5)
    finally:
        load.stop()
        timeline.stop()
        for thread in threads:
            thread.join(timeout=60)

    assert load.failures == [], load.failures[:5]  # the write side never needs the broker
    # While the node was gone (after a grace for the clients to move), events were confirmed and applied on
    # the broker path through the other two nodes.
    applied, published = timeline.between(killed_at + 10, restarted_at)
    assert published > 0, "the relay published nothing through the remaining nodes"
    assert applied > 0, "the projector applied nothing from the remaining nodes"

    eventually(lambda: cluster.unpublished() == 0, timeout=120, interval=1, what="the relay's backlog")
    cluster.assert_read_side_exact(http)
    projection = cluster.projection(http)
    assert projection["events_applied"] == cluster.count_events()  # each event applied, and once
    assert projection["dead_lettered"] == dead_lettered
    for account in accounts:
        versions = [row["version"] for row in cluster.statement(http, account)]
        assert versions == sorted(set(versions)), account  # no line twice, in order
    members = queue_members(cluster, witness)
    assert len(members) == 3 and "leader" in members.values(), members
    print(
        f"\ncluster: killed {victim} (the queue's leader) under {load.sent} deposits;"
        f" while it was down {published:.0f} events were confirmed and {applied:.0f} applied by the broker"
        " path;"
        f" longest pause of the broker path {timeline.longest_pause():.1f} s"
    )
