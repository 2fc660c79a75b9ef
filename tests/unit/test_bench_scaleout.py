"""The comparison of projector counts (`make bench BENCH_ARGS="--projectors 1,2,4"`): one column per count."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from bench import scaleout
from bench.__main__ import _counts


def _summary(
    count: int, drain: list[float], cores: list[dict[str, float]], parked: list[int]
) -> dict[str, Any]:
    return {
        "date": "2026-12-05T15:00:00+00:00",
        "mode": "full",
        "runs": len(drain),
        "drain_events_per_s": sorted(drain)[len(drain) // 2],
        "spread": {"drain_events_per_s": {"min": min(drain), "max": max(drain)}},
        "machine": {"cores": 2, "cpu_model": "test", "memory_gib": 1.0, "load_average_1m_max": 1.0},
        "environment": {"commit": "abc1234", "projectors": count},
        "scenarios": {
            "drain": [
                {"drain_events_per_s": value, "cpu_cores": share, "parked": held}
                for value, share, held in zip(drain, cores, parked, strict=True)
            ]
        },
    }


def test_each_count_is_a_column_with_its_median_spread_parked_events_and_projector_cpu() -> None:
    one = _summary(1, [4000, 4200, 4100], [{"projector": 0.5, "read-db": 0.3}] * 3, [0, 0, 0])
    two = _summary(
        2,
        [6000, 5800, 6100],
        [
            {"projector": 0.4, "projector-1": 0.3, "read-db": 0.5},
            {"projector": 0.6, "projector-1": 0.5, "read-db": 0.7},
            {"projector": 0.5, "projector-1": 0.4, "read-db": 0.6},
        ],
        [0, 2, 1],
    )
    table = scaleout.markdown({2: two, 1: one})
    lines = table.splitlines()
    assert "| | 1 projector | 2 projectors |" in lines
    assert "| drain | 4,100 events/s (4,000 - 4,200) | 6,000 events/s (5,800 - 6,100) |" in lines
    assert "| drain: events parked | 0 | 3 |" in lines
    # Medians per projector over the runs, their sum first.
    assert "| drain: CPU of the projectors, each | 0.50 | 0.90 (0.50 + 0.40) |" in lines
    assert "| drain: CPU of read-db | 0.30 | 0.60 |" in lines
    assert "| drain: CPU of the whole machine | 0.80 | 1.50 |" in lines


def test_projector_cores_are_ordered_by_number_not_by_text() -> None:
    cores = {f"projector-{i}": float(i) for i in range(1, 11)} | {"projector": 0.0, "relay": 9.0}
    assert scaleout.projector_cores(cores) == [float(i) for i in range(11)]


def test_counts_are_numbers_of_at_least_one_each_given_once() -> None:
    assert _counts("1,2,4") == [1, 2, 4]
    assert _counts("3") == [3]
    for bad in ("0", "1,1", "two", "1,,2"):
        with pytest.raises(argparse.ArgumentTypeError):
            _counts(bad)
