"""Grafana provisioning and dashboards (observability/grafana), checked offline.

Structure is read from the JSON; expressions are sent to a real Prometheus with an empty TSDB (promtool has no
expression checker), so a typo is a parse error here and not an empty panel in Grafana.
"""

from __future__ import annotations

import re
from pathlib import Path

import django_prometheus
import pytest
import requests
import yaml

from tests.observability_expressions import (
    DASHBOARDS,
    REPO,
    alert_expressions,
    dashboard_expressions,
    dashboard_module,
    dashboards,
    metric_names,
    panels,
)

DATASOURCE_UID = "cqrs-prometheus"
GRAFANA = REPO / "observability" / "grafana"

# rabbitmq_prometheus (RabbitMQ 3.10) names used by dashboards and alerts, as its /metrics and
# /metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count endpoints print them.
RABBITMQ_PROMETHEUS = {
    "rabbitmq_detailed_queue_messages",
    "rabbitmq_detailed_queue_messages_ready",
    "rabbitmq_detailed_queue_messages_unacked",
    "rabbitmq_detailed_queue_consumers",
    "rabbitmq_global_messages_received_total",
    "rabbitmq_global_messages_confirmed_total",
    "rabbitmq_global_messages_delivered_total",
    "rabbitmq_global_messages_acknowledged_total",
    "rabbitmq_connections",
    "rabbitmq_channels",
    "rabbitmq_alarms_memory_used_watermark",
    "rabbitmq_alarms_free_disk_space_watermark",
    "rabbitmq_alarms_file_descriptor_limit",
}
PROMETHEUS_BUILTIN = {"up"}
SERIES_SUFFIXES = ("", "_total", "_bucket", "_count", "_sum")


def _contract_metrics() -> set[str]:
    """Names of CONTRACT.md's Metrics table, with the series suffixes their types produce."""
    text = (REPO / "docs" / "CONTRACT.md").read_text()
    table = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)(?:\{[^`]*\})?` \| (\w+) \|", table, flags=re.M)
    assert len(rows) >= 11, "CONTRACT.md's Metrics table was not found"
    names = set()
    for name, kind in rows:
        names |= {name} if kind != "histogram" else {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return names


def _django_prometheus_metrics() -> set[str]:
    """Every name django-prometheus registers, read from its source (it has no list)."""
    package = Path(django_prometheus.__file__).parent
    names = set()
    for source in package.rglob("*.py"):
        names |= set(re.findall(r'"(django_\w+)"', source.read_text()))
    # prometheus_client adds _total to counters (unless already there) and _bucket/_count/_sum to histograms.
    return {f"{name}{suffix}" for name in names for suffix in SERIES_SUFFIXES}


def test_committed_dashboards_are_what_the_builder_writes():
    build = dashboard_module("build_dashboards")
    built = build.build()
    assert sorted(built) == sorted(p.name for p in DASHBOARDS.glob("*.json"))
    for name, board in built.items():
        assert (DASHBOARDS / name).read_text() == build.render(board), (
            f"{name} is stale: run python observability/grafana/src/build_dashboards.py"
        )


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_dashboard_structure(name):
    board = dashboards()[name]
    assert board["schemaVersion"] >= 39
    assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"])
    assert board["title"] and board["description"]
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(board):
        where = f"{name}: {panel['title']}"
        assert panel["gridPos"]["x"] >= 0 and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, where
        if panel["type"] == "row":
            continue
        assert len(panel.get("description", "")) > 40, f"{where}: say what to watch for"
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, where
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{where}: no unit"
        assert panel["targets"], where
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID, where
            assert target["expr"].strip(), where


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_dashboard_variables_query_the_provisioned_datasource(name):
    variables = dashboards()[name]["templating"]["list"]
    assert variables, "every dashboard filters by something"
    for variable in variables:
        assert variable["datasource"]["uid"] == DATASOURCE_UID
        assert variable["includeAll"] and variable["allValue"] == ".*"


def test_dashboards_link_to_each_other():
    uids = {board["uid"] for board in dashboards().values()}
    for board in dashboards().values():
        assert {link["url"].removeprefix("/d/") for link in board["links"]} == uids - {board["uid"]}


def test_provisioning_uses_the_dashboards_datasource_uid():
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    [source] = datasources["datasources"]
    assert (source["uid"], source["type"]) == (DATASOURCE_UID, "prometheus")
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "cqrs-lab.yml").read_text())
    [provider] = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


def test_every_metric_is_known():
    known = _contract_metrics() | _django_prometheus_metrics() | RABBITMQ_PROMETHEUS | PROMETHEUS_BUILTIN
    unknown = {
        (expression.source, name)
        for expression in [*dashboard_expressions(), *alert_expressions()]
        for name in metric_names(expression.expr)
        if name not in known
    }
    assert not unknown


def test_metric_name_extraction_skips_functions_labels_and_keywords():
    expr = (
        'histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{job=~"x|y"}[5m]))) > 1 '
        'and on () (sum(rate(b_total[1m])) or on () vector(0)) == 0 unless c{le="0.5"} offset 5m'
        " unless c offset $__rate_interval"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


def test_every_expression_parses(empty_prometheus):
    expressions = [*dashboard_expressions(), *alert_expressions()]
    assert len(expressions) > 40
    failures = []
    with requests.Session() as http:
        for expression in expressions:
            query = {"query": expression.promql}
            answer = http.post(f"{empty_prometheus}/api/v1/query", data=query, timeout=10)
            if answer.json().get("status") != "success":
                failures.append((expression.source, expression.promql, answer.json().get("error")))
    assert not failures


@pytest.mark.parametrize("name", sorted(dashboards()))
def test_every_process_series_can_be_narrowed_to_one_pod(name):
    """In Kubernetes each pod is a target (label `pod`): the `pod` variable narrows every panel that reads a
    process's own series (RabbitMQ's, node-wide, are left out)."""
    board = dashboards()[name]
    assert "pod" in {v["name"] for v in board["templating"]["list"]}
    for panel in panels(board):
        for target in panel.get("targets", []):
            if re.search(r"\b(cqrs_|django_|up\b)", target["expr"]):
                for selector in re.findall(
                    r"\b(?:cqrs_|django_)\w+(\{[^}]*\})?|\bup\b(\{[^}]*\})?", target["expr"]
                ):
                    assert 'pod=~"$pod"' in "".join(selector), (name, panel["title"], target["expr"])
