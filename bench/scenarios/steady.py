"""Steady: paced commands through the write API (deposits and transfers over the run's accounts), first at
100/s, then at 200/s, each for the mode's steady time; the lag of every event from commit to applied, read
from the read database's own timestamps. The 200/s phase gives the headline keys (`steady_lag_*`), the
100/s phase the `steady_100_*` keys."""

from __future__ import annotations

import time
from typing import Any

from bench import stages
from bench.http_load import PacedLoad, PacedResult
from bench.readings import AppliedEvent
from bench.scenarios.common import (
    Context,
    ScenarioResult,
    lag_points,
    paths,
    sleep_with_progress,
    wait_applied,
)
from bench.settings import STEADY_LOW_RATE, STEADY_RATE
from bench.stats import percentiles_ms

LOAD_SHARE = 0.45  # of the step's progress bar, per phase


def steady(context: Context) -> ScenarioResult:
    context.pipeline_on_bench_vhost()
    low_events, low_sent, low_stages = _phase(context, STEADY_LOW_RATE, 0.0)
    started_at = time.time()
    events, sent, high_stages = _phase(context, STEADY_RATE, 0.5)
    lag, low_lag = percentiles_ms([e.lag for e in events]), percentiles_ms([e.lag for e in low_events])
    return ScenarioResult(
        metrics={
            "steady_lag_p50_ms": lag["p50"],
            "steady_lag_p95_ms": lag["p95"],
            "steady_lag_p99_ms": lag["p99"],
            "steady_commands_per_s": _rate(sent),
            "steady_100_lag_p50_ms": low_lag["p50"],
            "steady_100_lag_p95_ms": low_lag["p95"],
            "steady_100_lag_p99_ms": low_lag["p99"],
            "steady_100_commands_per_s": _rate(low_sent),
        },
        details={
            "events": len(events),
            "lag_ms": lag,
            "paths": paths([*low_events, *events]),
            **load_details(sent),
            "stages_ms": high_stages,
            "at_100": {
                "events": len(low_events),
                "lag_ms": low_lag,
                "stages_ms": low_stages,
                **load_details(low_sent),
            },
        },
        series={"lag": lag_points(events, started_at)},
    )


def _phase(
    context: Context, rate: int, start: float
) -> tuple[list[AppliedEvent], PacedResult, dict[str, dict[str, float | None]]]:
    """`rate` commands/s for the mode's steady time, then until its events are applied; also the mean, p50
    and p99 of each stage of the lag from the relay's and the projector's histograms."""
    readings, seconds = context.readings, context.mode.steady_seconds
    before = readings.last_position()
    histograms_before = stages.scrape(context.system.metrics_ports)
    load = PacedLoad(context.system.write_api, context.accounts, rate).start()
    try:
        sleep_with_progress(context, seconds, start, LOAD_SHARE, f"{rate} commands/s")
    finally:
        sent = load.stop()
    committed = readings.committed_after(before)
    wait_applied(context, before, committed.last_position, committed.count, detail="last events")
    by_stage = stages.stages_ms(histograms_before, stages.scrape(context.system.metrics_ports))
    return readings.applied(before, committed.last_position), sent, by_stage


def _rate(sent: PacedResult) -> float | None:
    return round(sent.sent / sent.seconds, 1) if sent.seconds else None


def load_details(sent: PacedResult) -> dict[str, Any]:
    """What the paced client saw: achieved rate, answers by status, command latency, schedule slip."""
    return {
        "commands_sent": sent.sent,
        "commands_per_s": _rate(sent),
        "statuses": {str(status): count for status, count in sorted(sent.statuses.items())},
        "command_latency_ms": percentiles_ms(sent.latencies),
        "client_behind_schedule_ms": percentiles_ms(sent.behind),
    }
