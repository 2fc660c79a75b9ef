"""The contract's metrics (cqrs_common.metrics): names, buckets, and each process serving only its own."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY, generate_latest

from cqrs_common import metrics
from cqrs_common.events import EVENT_TYPES

RELAY_NAMES = {
    "cqrs_outbox_backlog",
    "cqrs_outbox_oldest_age_seconds",
    "cqrs_events_published_total",
    "cqrs_publish_lag_seconds",
    "cqrs_replication_slot_retained_bytes",
    "cqrs_broker_blocked",
}
PROJECTOR_NAMES = {
    "cqrs_events_applied_total",
    "cqrs_events_duplicate_total",
    "cqrs_events_dead_lettered_total",
    "cqrs_events_parked_total",
    "cqrs_projector_partition_active",
    "cqrs_projector_ordinal",
    "cqrs_projector_partition_deliveries_total",
    "cqrs_consume_lag_seconds",
    "cqrs_end_to_end_lag_seconds",
    "cqrs_projection_mode",
    "cqrs_projector_failures_total",
}


def _cqrs_families(registry) -> set[str]:
    text = generate_latest(registry).decode()
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    return {n for n in names if n.startswith("cqrs_") and not n.endswith("_created")}


def test_each_process_exports_exactly_its_contract_metrics():
    metrics.EVENTS_PUBLISHED.labels(type="MoneyDeposited").inc(0)
    metrics.EVENTS_APPLIED.labels(type="MoneyDeposited", path="broker").inc(0)
    metrics.EVENTS_DUPLICATE.labels(path="broker").inc(0)
    metrics.EVENTS_DEAD_LETTERED.labels(reason="unparsable").inc(0)
    metrics.REPLICATION_SLOT_RETAINED.labels(slot="read_side").set(0)
    metrics.set_projection_mode("broker")

    relay, projector = metrics.registry_for("relay"), metrics.registry_for("projector")

    assert _cqrs_families(relay) == RELAY_NAMES
    assert _cqrs_families(projector) == PROJECTOR_NAMES
    # The standard runtime metrics come along (process start time tells a restart apart from a stall).
    assert relay.get_sample_value("process_start_time_seconds") is not None
    assert projector.get_sample_value("process_start_time_seconds") is not None


def test_an_unknown_process_has_no_registry():
    with pytest.raises(ValueError, match="no metrics"):
        metrics.registry_for("write-service")  # type: ignore[arg-type]


def test_every_contract_metric_is_still_in_the_default_registry():
    assert _cqrs_families(REGISTRY) >= RELAY_NAMES | PROJECTOR_NAMES


def test_lag_histograms_span_half_a_millisecond_to_one_minute_with_the_slo_as_a_boundary():
    assert metrics.LAG_BUCKETS[0] == 0.0005 and metrics.LAG_BUCKETS[-1] == 60.0
    assert list(metrics.LAG_BUCKETS) == sorted(metrics.LAG_BUCKETS)
    assert 1.0 in metrics.LAG_BUCKETS
    # The benchmark's targets (p99 5 ms at 100/s, 15 ms at 200/s) are bucket bounds, so "met" is exact.
    assert {0.005, 0.015} <= set(metrics.LAG_BUCKETS)


def test_projection_mode_marks_exactly_one_path_active():
    metrics.set_projection_mode("replication")
    registry = metrics.registry_for("projector")
    assert registry.get_sample_value("cqrs_projection_mode", {"path": "replication"}) == 1
    assert registry.get_sample_value("cqrs_projection_mode", {"path": "broker"}) == 0


def test_known_label_values_start_at_zero_so_the_first_event_is_an_increase():
    relay, projector = metrics.registry_for("relay"), metrics.registry_for("projector")
    for event_type in EVENT_TYPES:
        assert relay.get_sample_value("cqrs_events_published_total", {"type": event_type}) is not None
        for path in metrics.PATHS:
            labels = {"type": event_type, "path": path}
            assert projector.get_sample_value("cqrs_events_applied_total", labels) is not None
    for path in metrics.PATHS:
        assert projector.get_sample_value("cqrs_events_duplicate_total", {"path": path}) is not None
