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


def median_and_spread(values: Sequence[float | None]) -> tuple[float | None, dict[str, float] | None]:
    present = [v for v in values if v is not None]
    if not present:
        return None, None
    return statistics.median(present), {"min": min(present), "max": max(present)}


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)
