"""The services' metrics reader against a page written by prometheus_client itself."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from cqrs_common.metrics_page import MetricsPage


def test_one_parse_answers_many_questions() -> None:
    registry = CollectorRegistry()
    applied = Counter("cqrs_events_applied", "applied", ["type", "path"], registry=registry)
    applied.labels(type="MoneyDeposited", path="broker").inc(3)
    applied.labels(type="MoneyDeposited", path="replication").inc(2)
    mode = Gauge("cqrs_projection_mode", "mode", ["path"], registry=registry)
    mode.labels(path="broker").set(0)
    mode.labels(path="replication").set(1)
    page = MetricsPage(generate_latest(registry).decode())

    assert page.sample("cqrs_events_applied_total", path="broker") == 3
    assert page.sample("cqrs_events_applied_total") == 5
    assert page.sample("cqrs_projection_mode", path="replication") == 1
    assert page.sample("cqrs_projection_mode", path="nowhere") is None


def test_an_empty_page_has_no_samples() -> None:
    assert MetricsPage("").sample("cqrs_outbox_backlog") is None
