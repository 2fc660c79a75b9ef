"""Percentiles, medians and spreads, small enough to read in one go (no numpy needed)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), interpolated linearly between the closest ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50, p95, p99 and max of durations in seconds, in milliseconds."""
    ms = [value * 1000 for value in seconds]
    return {
        "p50": _round(percentile(ms, 50)),
        "p95": _round(percentile(ms, 95)),
        "p99": _round(percentile(ms, 99)),
        "max": _round(max(ms) if ms else None),
    }


def median_and_spread(
    values: Sequence[float | None],
) -> tuple[float | None, dict[str, float | None] | None]:
    """Median, min and max over the runs. A run without a value (an outage not recovered while measured)
    counts as the worst: the median is None when most runs have none."""
    if all(v is None for v in values):
        return None, None
    ranked = [math.inf if v is None else v for v in values]

    def finite(value: float) -> float | None:
        return None if math.isinf(value) else value

    return finite(statistics.median(ranked)), {"min": finite(min(ranked)), "max": finite(max(ranked))}


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)
