"""Benchmarks of the maintenance commands (run with -m bench): verify and rebuild over 10k and 100k events.

Numbers are printed, nothing about time is asserted; the results are checked (a rebuild that is fast and
wrong is no result).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from read_service.projections.rebuild import read_models_rebuild
from read_service.projections.verify import read_models_verify
from tests.integration.read.replica_log import ReplicaLog, ledger, replica_log_fixture  # noqa: F401

pytestmark = [pytest.mark.bench, pytest.mark.timeout(1800)]


@pytest.fixture(autouse=True)
def _quiet_apply_step() -> Iterator[None]:
    """One line per applied batch is the projector's business; here it would bury the numbers."""
    logger = logging.getLogger("read_service.projections.apply")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


@pytest.mark.parametrize("moves", [10_000, 100_000], ids=["10k", "100k"])
def test_verify_and_rebuild(replica_log: ReplicaLog, moves: int) -> None:
    events = ledger(accounts=moves // 20, moves=moves - moves // 20, closed=moves // 200)
    replica_log.append(events)

    started = time.monotonic()
    first = read_models_rebuild()
    rebuilt_empty = time.monotonic() - started
    started = time.monotonic()
    report = read_models_verify()
    verified = time.monotonic() - started
    started = time.monotonic()
    again = read_models_rebuild()
    rebuilt_again = time.monotonic() - started

    assert report.clean and report.settled and report.events_checked == len(events)
    assert first.events_applied == again.events_applied == len(events)
    print(
        f"\n{len(events)} events, {report.accounts_checked} accounts: verify {verified:.2f} s; "
        f"rebuild from empty models {rebuilt_empty:.1f} s ({len(events) / rebuilt_empty:.0f} events/s), "
        f"over built models {rebuilt_again:.1f} s; "
        f"projector paused {again.projector_paused_seconds * 1000:.0f} ms"
    )
