"""Projectors scaled out in Compose (`make up PROJECTORS=2`: `--scale projector=2` of identical containers):
each claims a number at start and is the active consumer of the partitions it owns; when one crashes the other
takes its partitions over, the read side ends exact with nothing parked, and the crashed one, restarted by its
restart policy, claims its number again."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from cqrs_common.messaging import DEFAULT_PARTITIONS
from devkit.metrics import sample, scrape
from devkit.polling import eventually
from tests.compose.conftest import ComposeSystem

REPLICAS = 2
# Recreating the projectors twice (up to two and back to one) and a crash with its restart.
pytestmark = pytest.mark.timeout(900)


@dataclass(frozen=True)
class Projector:
    container: str
    url: str  # its /metrics on the host port Docker gave it from the range

    def page(self) -> str:
        page = scrape(self.url)
        assert page is not None, f"{self.container[:12]}: no /metrics at {self.url}"
        return page

    def ordinal(self) -> int | None:
        page = scrape(self.url)
        value = None if page is None else sample(page, "cqrs_projector_ordinal")
        return None if value is None else int(value)

    def active(self) -> set[int]:
        page = self.page()
        return {
            p
            for p in range(DEFAULT_PARTITIONS)
            if sample(page, "cqrs_projector_partition_active", partition=str(p))
        }

    def parked(self) -> float:
        """Over both paths: the sample of a name without labels sums its series."""
        return sample(self.page(), "cqrs_events_parked_total") or 0.0


def _docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()


def projectors(system: ComposeSystem) -> dict[int, Projector]:
    """The running projector containers by the number each claimed (those that answer)."""
    found = {}
    for container in system.compose("ps", "-q", "projector").stdout.split():
        if _docker("inspect", "--format", "{{.State.Running}}", container) != "true":
            continue
        published = _docker("port", container, "9102/tcp").splitlines()[0]
        projector = Projector(container, f"http://{published}/metrics")
        ordinal = projector.ordinal()
        if ordinal is not None:
            found[ordinal] = projector
    return found


def both_numbered(system: ComposeSystem) -> dict[int, Projector] | None:
    found = projectors(system)
    return found if set(found) == set(range(REPLICAS)) else None


@pytest.fixture(scope="module")
def scaled(system: ComposeSystem) -> Iterator[None]:
    system.compose("up", timeout=600, PROJECTORS=str(REPLICAS), PROJECTOR_METRICS_HOST_PORTS="18110-18119")
    try:
        yield
    finally:
        system.compose("up", timeout=600, PROJECTORS="1")


def test_scaled_projectors_share_the_partitions_and_take_over_a_crashed_ones(
    system: ComposeSystem, http: requests.Session, scaled: None
) -> None:
    numbered = eventually(
        lambda: both_numbered(system), timeout=60, interval=1, what="two projectors numbered 0 and 1"
    )
    # Enough accounts that every partition has traffic, so each owner shows itself active on its own.
    accounts = [system.open_account(http, f"scaled-{i}", deposit="5.00") for i in range(16)]
    owned = {
        ordinal: {p for p in range(DEFAULT_PARTITIONS) if p % REPLICAS == ordinal} for ordinal in numbered
    }
    eventually(
        lambda: all(numbered[o].active() == owned[o] for o in numbered),
        timeout=60,
        interval=1,
        what=f"each projector active on its own partitions {owned}",
    )
    system.assert_read_side_exact(http)

    # A crash: the process of projector 0 killed (not `docker kill`, which counts as stopping it by hand).
    crashed, survivor = numbered[0], numbered[1]
    os.kill(int(_docker("inspect", "--format", "{{.State.Pid}}", crashed.container)), signal.SIGKILL)
    for account in accounts:
        deposited = system.command(http, f"/api/accounts/{account}/deposit", {"amount": "1.00"})
        assert deposited.status_code == 200, deposited.text
    eventually(
        lambda: survivor.active() == set(range(DEFAULT_PARTITIONS)),
        timeout=60,
        interval=1,
        what="the survivor active on every partition",
    )
    truth = system.assert_read_side_exact(http)
    assert all(version == 3 for _, version in (truth[a] for a in accounts))  # opened, 5.00, 1.00

    # Restarted by its restart policy, it claims the number its old session held and stands by.
    back = eventually(lambda: both_numbered(system), timeout=120, interval=1, what="projector 0 back")
    assert back[0].container == crashed.container
    assert back[1].container == survivor.container
    assert sum(projector.parked() for projector in back.values()) == 0
