"""Sustained: producer processes drive the service layer as fast as they go while relay and projector run;
events per second end to end (first commit to last applied) and the lag of every event."""

from __future__ import annotations

import time

from bench.producers import run_producers
from bench.scenarios.common import (
    Context,
    ScenarioResult,
    lag_points,
    paths,
    per_second,
    wait_applied,
)
from bench.stats import percentiles_ms

RUN_SHARE = 0.85


def sustained(context: Context) -> ScenarioResult:
    readings, progress, seconds = context.readings, context.progress, context.mode.sustained_seconds
    producers = context.mode.producers
    context.pipeline_on_bench_vhost()
    before = readings.last_position()
    began = time.monotonic()

    def running() -> None:
        elapsed = time.monotonic() - began
        progress.update(
            RUN_SHARE * min(elapsed / (seconds + 3), 1), f"{producers} producers, {elapsed:.0f} s"
        )

    totals = run_producers(context.databases, count=producers, seconds=seconds, tick=running)
    committed = readings.committed_after(before)
    wait_applied(context, before, committed.last_position, committed.count, detail="catching up")
    # The producers' own set-up (opening their accounts) ran before the go signal: not part of the measure.
    events = [
        e for e in readings.applied(before, committed.last_position) if e.occurred_at >= totals.started_at
    ]
    first_commit = min(e.occurred_at for e in events)
    last_commit = max(e.occurred_at for e in events)
    last_applied = max(e.applied_at for e in events)
    lag = percentiles_ms([e.lag for e in events])
    return ScenarioResult(
        metrics={
            "sustained_events_per_s": round(len(events) / (last_applied - first_commit), 1),
            "sustained_lag_p50_ms": lag["p50"],
            "sustained_lag_p95_ms": lag["p95"],
            "sustained_lag_p99_ms": lag["p99"],
        },
        details={
            "events": len(events),
            "commands": totals.commands,
            "rejected_commands": totals.rejected,
            "commit_events_per_s": round(len(events) / (last_commit - first_commit), 1),
            "catch_up_after_last_commit_s": round(last_applied - last_commit, 3),
            "lag_ms": lag,
            "paths": paths(events),
        },
        series={
            "throughput": per_second(events, totals.started_at),
            "lag": lag_points(events, totals.started_at),
        },
    )
