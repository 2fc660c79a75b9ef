"""The benchmark's count of parked events over a scenario, whose pipeline may have been restarted."""

from __future__ import annotations

from bench.__main__ import _parked_since


def test_a_projector_that_ran_throughout_counts_its_growth_and_a_restarted_one_from_zero() -> None:
    before = {"projector": (100, 5.0), "projector-1": (101, 2.0)}
    after = {"projector": (100, 7.0), "projector-1": (202, 3.0), "projector-2": (203, 1.0)}
    assert _parked_since(before, after) == 2 + 3 + 1
    assert _parked_since({}, {}) == 0
