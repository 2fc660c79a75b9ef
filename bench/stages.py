"""Where the lag goes, from the pipeline's own histograms (the ones the Grafana dashboard shows): the relay's
`cqrs_publish_lag_seconds` (commit, i.e. occurred_at, to RabbitMQ's confirm) and the projector's
`cqrs_consume_lag_seconds` (the relay's publish to applied and committed) and `cqrs_end_to_end_lag_seconds`.
Mean, p50 and p99 of each over a phase, from the change of the histogram's buckets, `_sum` and `_count`
between two scrapes; quantiles are interpolated inside a bucket as Prometheus's `histogram_quantile` does, so
they are as fine as the buckets (cqrs_common.metrics.LAG_BUCKETS)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from devkit import metrics

HISTOGRAMS = {
    "relay": ("cqrs_publish_lag_seconds",),
    "projector": ("cqrs_consume_lag_seconds", "cqrs_end_to_end_lag_seconds"),
}
# Names in the results: what each stage covers. The first two follow one another (they overlap only by the
# time from the relay's publish to its confirm); the third is the whole way.
STAGES = {
    "cqrs_publish_lag_seconds": "occurred_to_confirmed",
    "cqrs_consume_lag_seconds": "published_to_applied",
    "cqrs_end_to_end_lag_seconds": "occurred_to_applied",
}
QUANTILES = {"p50": 0.5, "p99": 0.99}


@dataclass(frozen=True, slots=True)
class Histogram:
    count: float
    total: float
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound (le) -> cumulative count


@dataclass(frozen=True, slots=True)
class Totals:
    values: dict[str, Histogram]  # histogram name -> its state at the scrape


def scrape(ports: dict[str, int]) -> Totals:
    """Each histogram as its process exposes it now; a process that does not answer contributes nothing."""
    values: dict[str, Histogram] = {}
    for process, names in HISTOGRAMS.items():
        port = ports.get(process)
        if port is None:
            continue
        exposition = metrics.scrape(f"http://127.0.0.1:{port}/metrics", timeout=2)
        if exposition is None:
            continue
        values.update(histograms(exposition, names))
    return Totals(values)


def histograms(exposition: str, names: tuple[str, ...]) -> dict[str, Histogram]:
    """The histograms called `names` on a /metrics page, their label sets summed (one per process here)."""
    found: dict[str, Histogram] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name not in names or family.type != "histogram":
            continue
        count = total = 0.0
        buckets: dict[float, float] = {}
        for sample in family.samples:
            if sample.name == f"{family.name}_count":
                count += sample.value
            elif sample.name == f"{family.name}_sum":
                total += sample.value
            elif sample.name == f"{family.name}_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
        found[family.name] = Histogram(count, total, buckets)
    return found


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile (0..1) of observations counted in cumulative `buckets`, interpolated linearly inside
    the bucket it falls in (from the bucket below's bound, 0 for the first); in the +Inf bucket, the highest
    finite bound. None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def stages_ms(before: Totals, after: Totals) -> dict[str, dict[str, float | None]]:
    """Mean, p50 and p99 of each stage over the events observed between the two scrapes, in milliseconds;
    None where a histogram was missing or nothing was observed."""
    result: dict[str, dict[str, float | None]] = {}
    for name, stage in STAGES.items():
        first, last = before.values.get(name), after.values.get(name)
        figures: dict[str, float | None] = {"mean": None, **dict.fromkeys(QUANTILES)}
        if first is not None and last is not None and last.count > first.count:
            count = last.count - first.count
            figures["mean"] = _ms((last.total - first.total) / count)
            delta = {bound: last.buckets[bound] - first.buckets.get(bound, 0.0) for bound in last.buckets}
            for label, q in QUANTILES.items():
                value = quantile(q, delta)
                figures[label] = None if value is None else _ms(value)
        result[stage] = figures
    return result


def tail_owner(figures: dict[str, dict[str, float | None]]) -> str | None:
    """Of the two stages that follow one another, the one with the larger p99: where the tail is spent."""
    candidates = {
        stage: p99
        for stage in ("occurred_to_confirmed", "published_to_applied")
        if (p99 := figures.get(stage, {}).get("p99")) is not None
    }
    return max(candidates, key=lambda stage: candidates[stage]) if candidates else None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
