"""Steady: 200 commands per second through the write API (deposits and transfers over the run's accounts);
the lag of every event from commit to applied, read from the read database's own timestamps."""

from __future__ import annotations

import time

from bench.http_load import PacedLoad, PacedResult
from bench.scenarios.common import (
    Context,
    ScenarioResult,
    lag_points,
    paths,
    sleep_with_progress,
    wait_applied,
)
from bench.settings import STEADY_RATE
from bench.stats import percentiles_ms

LOAD_SHARE = 0.9


def steady(context: Context) -> ScenarioResult:
    readings, seconds = context.readings, context.mode.steady_seconds
    context.pipeline_on_bench_vhost()
    before = readings.last_position()
    started_at = time.time()
    load = PacedLoad(context.system.write_api, context.accounts, STEADY_RATE).start()
    try:
        sleep_with_progress(context, seconds, 0.0, LOAD_SHARE, f"{STEADY_RATE} commands/s")
    finally:
        sent = load.stop()
    committed = readings.committed_after(before)
    wait_applied(context, before, committed.last_position, committed.count, detail="last events")
    events = readings.applied(before, committed.last_position)
    lag = percentiles_ms([e.lag for e in events])
    return ScenarioResult(
        metrics={
            "steady_lag_p50_ms": lag["p50"],
            "steady_lag_p95_ms": lag["p95"],
            "steady_lag_p99_ms": lag["p99"],
            "steady_commands_per_s": round(sent.sent / sent.seconds, 1),
        },
        details={"events": len(events), "lag_ms": lag, "paths": paths(events), **load_details(sent)},
        series={"lag": lag_points(events, started_at)},
    )


def load_details(sent: PacedResult) -> dict:
    """What the paced client saw: achieved rate, answers by status, command latency, schedule slip."""
    return {
        "commands_sent": sent.sent,
        "commands_per_s": round(sent.sent / sent.seconds, 1) if sent.seconds else None,
        "statuses": {str(status): count for status, count in sorted(sent.statuses.items())},
        "command_latency_ms": percentiles_ms(sent.latencies),
        "client_behind_schedule_ms": percentiles_ms(sent.behind),
    }
