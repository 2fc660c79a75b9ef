"""The benchmark's per-stage quantiles, read from real prometheus_client histograms exposed as /metrics pages
are: observations at known values give the quantiles Prometheus's histogram_quantile would give."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench import stages
from cqrs_common.metrics import LAG_BUCKETS


def exposed(*observations: float) -> tuple[Histogram, CollectorRegistry]:
    registry = CollectorRegistry()
    histogram = Histogram("cqrs_publish_lag_seconds", "test", buckets=LAG_BUCKETS, registry=registry)
    for value in observations:
        histogram.observe(value)
    return histogram, registry


def totals(registry: CollectorRegistry) -> stages.Totals:
    page = generate_latest(registry).decode()
    return stages.Totals(stages.histograms(page, ("cqrs_publish_lag_seconds",)))


def test_quantiles_interpolate_inside_the_bucket_they_fall_in() -> None:
    # 100 observations: 98 in (1 ms, 1.5 ms], 2 in (20 ms, 30 ms]. p50 falls in the first bucket, p99 in the
    # (20, 30] ms one, halfway through its two observations (rank 99 of 100 = the 1st of 2).
    histogram, registry = exposed()
    before = totals(registry)
    for value in [0.0012] * 98 + [0.025] * 2:
        histogram.observe(value)
    figures = stages.stages_ms(before, totals(registry))["occurred_to_confirmed"]
    assert figures["mean"] == round((98 * 0.0012 + 2 * 0.025) / 100 * 1000, 2)
    assert 1.0 < figures["p50"] <= 1.5
    assert figures["p99"] == 25.0


def test_only_what_was_observed_between_the_scrapes_counts() -> None:
    histogram, registry = exposed(*([0.050] * 1000))  # before the phase: slow
    before = totals(registry)
    for _ in range(100):
        histogram.observe(0.0009)  # during the phase: fast
    figures = stages.stages_ms(before, totals(registry))["occurred_to_confirmed"]
    assert figures["mean"] == 0.9
    assert figures["p99"] is not None and figures["p99"] <= 1.0


def test_nothing_observed_gives_no_figures() -> None:
    _, registry = exposed(0.001)
    same = totals(registry)
    assert stages.stages_ms(same, same)["occurred_to_confirmed"] == {"mean": None, "p50": None, "p99": None}
    assert stages.stages_ms(same, same)["published_to_applied"] == {"mean": None, "p50": None, "p99": None}


def test_a_quantile_beyond_the_last_bound_is_that_bound() -> None:
    assert stages.quantile(0.99, {0.001: 0.0, 60.0: 1.0, float("inf"): 100.0}) == 60.0


def test_the_tail_belongs_to_the_stage_with_the_larger_p99() -> None:
    figures = {
        "occurred_to_confirmed": {"p99": 3.0},
        "published_to_applied": {"p99": 11.0},
        "occurred_to_applied": {"p99": 14.0},
    }
    assert stages.tail_owner(figures) == "published_to_applied"
    assert stages.tail_owner({}) is None
