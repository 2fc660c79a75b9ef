"""What every scenario shares: the run's context, its result, waiting for the read side, and the per-second
series the plots draw."""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from bench.infra import Databases
from bench.progress import Progress
from bench.readings import AppliedEvent, Readings
from bench.settings import Mode
from bench.system import BenchSystem
from devkit.polling import poll
from devkit.private_rabbitmq import PrivateRabbitMQ

APPLY_TIMEOUT_SECONDS = 300


@dataclass
class Context:
    mode: Mode
    databases: Databases
    system: BenchSystem
    readings: Readings
    progress: Progress
    accounts: list[UUID] = field(default_factory=list)  # opened through the API, for the HTTP scenarios
    private_broker: Future[PrivateRabbitMQ] | None = None  # booted in the background during set-up
    pipeline_on_private_broker: bool = False

    def start_pipeline_on_bench_vhost(self) -> float:
        """(Re)starts relay and projector on the run's vhost; returns when both were ready."""
        self.system.stop_pipeline()
        self.pipeline_on_private_broker = False
        return self.system.start_pipeline(self.databases.write_broker_url, self.databases.read_broker_url)

    def start_pipeline_on_private_broker(self, broker: PrivateRabbitMQ) -> None:
        self.system.stop_pipeline()
        self.pipeline_on_private_broker = True
        self.system.start_pipeline(broker.url, broker.url)

    def pipeline_on_bench_vhost(self) -> None:
        """Moves relay and projector back from the private node if the outage scenario left them there."""
        if self.pipeline_on_private_broker:
            self.start_pipeline_on_bench_vhost()


@dataclass
class ScenarioResult:
    metrics: dict[str, Any]  # the headline numbers (keys of results JSON)
    details: dict[str, Any]  # everything else worth keeping in the JSON
    series: dict[str, Any] = field(default_factory=dict)  # for the plots only


class PipelineStalled(RuntimeError):
    pass


def wait_applied(context: Context, after: int, until: int, expected: int, detail: str = "applied") -> None:
    """Until the `expected` events of the position range are applied on the read side (progress shows how
    many); positions may have gaps, so the caller counts them on the write side."""

    def stalled(applied: int, stopped: object) -> PipelineStalled:
        return PipelineStalled(
            f"{applied:,} of {expected:,} events applied; {context.readings.unpublished():,} unpublished;"
            f" exited: {stopped or 'none'}"
        )

    def all_applied() -> bool:
        applied = context.readings.applied_count(after, until)
        context.progress.update(applied / max(expected, 1), f"{detail} {applied:,}/{expected:,}")
        if applied < expected and (stopped := context.system.failed_processes()):
            raise stalled(applied, stopped)
        return applied >= expected

    if not poll(all_applied, APPLY_TIMEOUT_SECONDS, interval=0.1):
        raise stalled(context.readings.applied_count(after, until), None)


def sleep_with_progress(context: Context, seconds: float, start: float, share: float, what: str) -> None:
    """Sleeps `seconds`, moving the bar from `start` over `share` of the step."""
    began = time.monotonic()
    while (elapsed := time.monotonic() - began) < seconds:
        context.progress.update(start + share * elapsed / seconds, f"{what} {elapsed:4.1f}/{seconds:g} s")
        time.sleep(min(0.2, seconds - elapsed))


def per_second(events: Sequence[AppliedEvent], origin: float) -> dict[str, Any]:
    """Events applied per second by path, and committed per second, in seconds since `origin`, from the
    first event applied to the last: a trailing one-second average (shorter for short spans), sampled 200
    times. Averaged because a batch's events are applied in one statement, so the raw rate is all spikes."""
    if not events:
        return {"applied": {}, "committed": []}
    start = min(e.applied_at for e in events) - origin
    end = max(e.applied_at for e in events) - origin
    window = min(1.0, max((end - start) / 4, 0.05))
    grid = [start + (end - start) * i / 199 for i in range(200)]
    applied: dict[str, list[float]] = {}
    for event in events:
        applied.setdefault(event.path, []).append(event.applied_at - origin)
    committed = [e.occurred_at - origin for e in events]

    def rates(moments: list[float]) -> list[tuple[float, float]]:
        moments.sort()
        return [
            (
                round(t, 3),
                (bisect.bisect_right(moments, t) - bisect.bisect_right(moments, t - window)) / window,
            )
            for t in grid
        ]

    return {
        "applied": {path: rates(moments) for path, moments in applied.items()},
        "committed": rates(committed),
        "window_s": window,
    }


def lag_points(events: Sequence[AppliedEvent], origin: float) -> list[tuple[float, float]]:
    """(seconds since `origin` of the commit, lag in ms) per event."""
    return [(event.occurred_at - origin, event.lag * 1000) for event in events]


def paths(events: Sequence[AppliedEvent]) -> dict[str, int]:
    return dict(Counter(event.path for event in events))
