"""Where the lag goes, from the pipeline's own histograms (the ones the Grafana dashboard shows): the relay's
`cqrs_publish_lag_seconds` (commit, i.e. occurred_at, to RabbitMQ's confirm) and the projector's
`cqrs_consume_lag_seconds` (the relay's publish to applied and committed) and `cqrs_end_to_end_lag_seconds`.
Means over a phase, from the change of each histogram's `_sum` and `_count` between two scrapes."""

from __future__ import annotations

from dataclasses import dataclass

from devkit import metrics

HISTOGRAMS = {
    "relay": ("cqrs_publish_lag_seconds",),
    "projector": ("cqrs_consume_lag_seconds", "cqrs_end_to_end_lag_seconds"),
}
# Names in the results: what each mean covers.
STAGES = {
    "cqrs_publish_lag_seconds": "occurred_to_confirmed",
    "cqrs_consume_lag_seconds": "published_to_applied",
    "cqrs_end_to_end_lag_seconds": "occurred_to_applied",
}


@dataclass(frozen=True, slots=True)
class Totals:
    values: dict[str, tuple[float, float]]  # histogram -> (count, sum)


def scrape(ports: dict[str, int]) -> Totals:
    """Count and sum of each histogram; a process that does not answer contributes nothing."""
    values: dict[str, tuple[float, float]] = {}
    for process, names in HISTOGRAMS.items():
        port = ports.get(process)
        if port is None:
            continue
        exposition = metrics.scrape(f"http://127.0.0.1:{port}/metrics", timeout=2)
        if exposition is None:
            continue
        for name in names:
            count, total = (
                metrics.sample(exposition, f"{name}_count"),
                metrics.sample(exposition, f"{name}_sum"),
            )
            if count is not None and total is not None:
                values[name] = (count, total)
    return Totals(values)


def means_ms(before: Totals, after: Totals) -> dict[str, float | None]:
    """Mean of each stage over the events observed between the two scrapes, in milliseconds."""
    means: dict[str, float | None] = {}
    for name, stage in STAGES.items():
        if name not in before.values or name not in after.values:
            means[stage] = None
            continue
        count = after.values[name][0] - before.values[name][0]
        total = after.values[name][1] - before.values[name][1]
        means[stage] = round(total / count * 1000, 2) if count > 0 else None
    return means
