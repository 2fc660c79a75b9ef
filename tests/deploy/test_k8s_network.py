"""deploy/k8s's NetworkPolicies, evaluated offline: which pod may open a connection to which, compared with
which containers share a network in docker-compose.yml (and deploy/compose/eventstore.yml for the event store
overlay)."""

from __future__ import annotations

from itertools import permutations
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging_support import K8S, OVERLAYS, REPO, kustomize_build

Objects = tuple[dict[str, Any], ...]
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}
# Rules open to every source or destination, on these ports only: the published ports (Compose's `ports:`,
# kind's NodePorts) and the API server for Prometheus's pod discovery.
OPEN_RULES = {
    "published-ports": ("ingress", {8001, 8002, 3000, 9090}),
    "prometheus-api-server": ("egress", {443, 6443}),
}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions) against a pod's labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


def pods(objects: Objects) -> dict[str, dict[str, str]]:
    return {
        o["metadata"]["name"]: o["spec"]["template"]["metadata"].get("labels", {})
        for o in objects
        if o["kind"] in WORKLOAD_KINDS
    }


def policies(objects: Objects) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "NetworkPolicy"]


def allowed(objects: Objects, source: str, destination: str) -> bool:
    """Whether `source` may open a connection to `destination` on some port, through rules naming pods of
    this namespace (the open rules of OPEN_RULES are checked on their own)."""
    labels = pods(objects)

    def direction(pod: str, other: str, kind: str, peers_key: str) -> bool:
        applying = [
            p
            for p in policies(objects)
            if selects(p["spec"]["podSelector"], labels[pod])
            and kind.capitalize() in p["spec"]["policyTypes"]
        ]
        if not applying:
            return True  # not isolated in this direction
        for policy in applying:
            for rule in policy["spec"].get(kind, []):
                for peer in rule.get(peers_key, []):
                    in_namespace = "namespaceSelector" not in peer and "ipBlock" not in peer
                    if in_namespace and selects(peer["podSelector"], labels[other]):
                        return True
        return False

    return direction(source, destination, "egress", "to") and direction(
        destination, source, "ingress", "from"
    )


def compose_networks(with_event_store: bool) -> dict[str, set[str]]:
    """Each Compose service's networks; the event store's services and override only `with_event_store`."""
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    networks = {
        name: set(service.get("networks", []))
        for name, service in services.items()
        if with_event_store or "profiles" not in service
    }
    if with_event_store:
        override = yaml.safe_load((REPO / "deploy" / "compose" / "eventstore.yml").read_text())["services"]
        for name, service in override.items():
            networks[name] |= set(service.get("networks", []))
    return networks


@pytest.mark.parametrize("directory", [K8S / "base", *OVERLAYS], ids=lambda p: p.name)
def test_pods_reach_each_other_as_compose_containers_do(directory: Path) -> None:
    objects = kustomize_build(directory)
    networks = compose_networks(with_event_store="eventstore" in directory.name)
    names = sorted(pods(objects))
    assert set(names) == set(networks), "the same processes in Compose and Kubernetes"
    differences = [
        (source, destination, bool(networks[source] & networks[destination]))
        for source, destination in permutations(names, 2)
        if allowed(objects, source, destination) != bool(networks[source] & networks[destination])
    ]
    assert differences == [], "(from, to, reachable in Compose)"


@pytest.mark.parametrize("directory", [K8S / "base", *OVERLAYS], ids=lambda p: p.name)
def test_the_write_side_cannot_reach_read_db_nor_the_read_side_write_db(directory: Path) -> None:
    objects = kustomize_build(directory)
    for source in ("write-service", "relay"):
        assert not allowed(objects, source, "read-db"), source
        assert allowed(objects, source, "write-db"), source
    for source in ("read-service", "projector"):
        assert not allowed(objects, source, "write-db"), source
        assert allowed(objects, source, "read-db"), source
    assert allowed(objects, "read-db", "write-db"), "the subscription connects to the publisher"
    for process in ("write-service", "relay", "read-service", "projector", "rabbitmq"):
        assert allowed(objects, "prometheus", process), f"Prometheus scrapes {process}"


def test_every_pod_is_isolated_and_may_resolve_names(base_objects: Objects) -> None:
    by_name = {p["metadata"]["name"]: p["spec"] for p in policies(base_objects)}
    assert by_name["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = by_name["allow-dns"]
    assert dns["podSelector"] == {} and dns["policyTypes"] == ["Egress"]
    [rule] = dns["egress"]
    assert {(p["protocol"], p["port"]) for p in rule["ports"]} == {("UDP", 53), ("TCP", 53)}
    [peer] = rule["to"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
    assert peer["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}


def test_rules_open_to_anyone_only_open_the_published_ports(base_objects: Objects) -> None:
    open_rules = {}
    for policy in policies(base_objects):
        for kind, peers_key in (("ingress", "from"), ("egress", "to")):
            for rule in policy["spec"].get(kind, []):
                if not rule.get(peers_key) and policy["metadata"]["name"] != "allow-dns":
                    open_rules[policy["metadata"]["name"]] = (kind, {p["port"] for p in rule["ports"]})
    assert open_rules == OPEN_RULES
    nodeports = {
        o["metadata"]["name"]: {p["port"] for p in o["spec"]["ports"]}
        for o in kustomize_build(K8S / "overlays" / "kind")
        if o["kind"] == "Service" and o["spec"].get("type") == "NodePort"
    }
    published = next(p for p in policies(base_objects) if p["metadata"]["name"] == "published-ports")
    labels = pods(base_objects)
    assert {n for n in labels if selects(published["spec"]["podSelector"], labels[n])} == set(nodeports)
    assert set().union(*nodeports.values()) == OPEN_RULES["published-ports"][1]


def test_the_evaluation_tells_isolated_pods_apart() -> None:
    """The evaluator itself: a default-deny blocks, a same-network rule lets through."""
    deployment = {
        "kind": "Deployment",
        "spec": {"template": {"metadata": {"labels": {"net": "a"}}}},
    }
    a = {**deployment, "metadata": {"name": "a"}}
    b = {**deployment, "metadata": {"name": "b"}}
    deny = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "deny"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
    assert allowed((a, b), "a", "b")
    assert not allowed((a, b, deny), "a", "b")
    same = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "same"},
        "spec": {
            "podSelector": {"matchLabels": {"net": "a"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"net": "a"}}}]}],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"net": "a"}}}]}],
        },
    }
    assert allowed((a, b, deny, same), "a", "b")
