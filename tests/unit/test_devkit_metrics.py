"""The dev kit's metrics reader against a page written by prometheus_client itself."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from devkit.metrics import sample


def _page() -> str:
    registry = CollectorRegistry()
    applied = Counter("cqrs_events_applied", "applied", ["type", "path"], registry=registry)
    applied.labels(type="MoneyDeposited", path="broker").inc(3)
    applied.labels(type="MoneyWithdrawn", path="broker").inc(2)
    applied.labels(type="MoneyDeposited", path="replication").inc()
    lag = Histogram("cqrs_consume_lag_seconds", "lag", registry=registry)
    lag.observe(0.5)
    lag.observe(1.5)
    return generate_latest(registry).decode()


def test_a_sample_is_summed_over_the_label_sets_that_include_the_given_labels() -> None:
    page = _page()
    assert sample(page, "cqrs_events_applied_total") == 6
    assert sample(page, "cqrs_events_applied_total", path="broker") == 5
    assert sample(page, "cqrs_events_applied_total", path="broker", type="MoneyDeposited") == 3


def test_a_histograms_count_and_sum_are_samples_of_their_own() -> None:
    page = _page()
    assert sample(page, "cqrs_consume_lag_seconds_count") == 2
    assert sample(page, "cqrs_consume_lag_seconds_sum") == 2.0


def test_no_sample_of_that_name_or_labels_is_none_not_zero() -> None:
    page = _page()
    assert sample(page, "cqrs_events_applied") is None  # the family's name, not a sample's
    assert sample(page, "cqrs_events_applied_total", path="nowhere") is None
