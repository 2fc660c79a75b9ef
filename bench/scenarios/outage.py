"""Outage: steady load while the broker is stopped, on a private RabbitMQ node (the shared one is never
touched); the relay and the projector are moved to that node (the next scenario moves them back).

Timeline: load at 200 commands/s; after a baseline the node is stopped, stays down for the mode's outage
and is started again ("back" = when it serves AMQP again). The load goes on until the lag has been normal
for the mode's `outage_after_seconds` (or a cap), then stops.

Normal lag is max(2 x the baseline's p99, 50 ms). Commits from the moment the node is down are cut into
one-second windows; a window is normal when its events' p90 lag is. Recovery is the start of the first
window after which every window is normal (up to the commits judged while the load ran), so a lag that
rises again once the broker is back (paths handing over) counts as not recovered yet.
`outage_recovery_s` is the time from the broker being back to that point (0 if it came earlier: the
replication path kept the lag normal); None if the lag was still not normal when the load stopped. The
maximum lag is over every event of the scenario.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from bench.http_load import PacedLoad
from bench.readings import AppliedEvent
from bench.scenarios.common import (
    Context,
    ScenarioResult,
    lag_points,
    paths,
    per_second,
    sleep_with_progress,
    wait_applied,
)
from bench.scenarios.steady import load_details
from bench.settings import STEADY_RATE
from bench.stats import percentile, percentiles_ms
from devkit.polling import poll

NORMAL_LAG_FLOOR_S = 0.050
WINDOW_S = 1.0
WINDOW_PERCENTILE = 90
SETTLED_S = 2.0  # commits older than this are judged while the load runs (if all are applied by then)
WARM_UP_S = 0.5  # the first commits of the baseline are left out of it
MAX_POSITION = 2**63 - 1


def outage(context: Context) -> ScenarioResult:
    assert context.private_broker is not None, "the outage scenario needs the private broker"
    mode, readings, progress = context.mode, context.readings, context.progress
    progress.update(0.0, "booting the private RabbitMQ node")
    broker = context.private_broker.result()
    context.start_pipeline_on_private_broker(broker)
    before = readings.last_position()
    started_at = time.time()
    load = PacedLoad(context.system.write_api, context.accounts, STEADY_RATE, seed=7).start()
    try:
        sleep_with_progress(context, mode.outage_before_seconds, 0.05, 0.1, "baseline")
        stop_requested_at = time.time()
        progress.update(0.15, "stopping the broker")
        broker.stop()
        stopped_at = time.time()
        sleep_with_progress(context, mode.outage_seconds, 0.2, 0.3, "broker down")
        progress.update(0.5, "starting the broker")
        start_requested_at = time.time()
        broker.start()
        back_at = time.time()
        normal = _normal_lag(readings.applied(before, MAX_POSITION), started_at, stop_requested_at)
        judged_until = _until_recovered(context, before, normal, stopped_at, back_at)
    finally:
        sent = load.stop()
    committed = readings.committed_after(before)
    wait_applied(context, before, committed.last_position, committed.count, detail="last events")
    events = readings.applied(before, committed.last_position)
    # From when the node is down (while `rabbitmqctl stop` runs, the broker still delivers for a while) to
    # the commits judged while the load ran: the last moments of the load are not part of the outage.
    recovered_at = recovery_point(
        [e for e in events if e.occurred_at < judged_until], normal, since=stopped_at
    )
    baseline = _baseline(events, started_at, stop_requested_at)
    return ScenarioResult(
        metrics={
            "outage_recovery_s": None if recovered_at is None else round(max(recovered_at - back_at, 0.0), 3),
            "outage_max_lag_s": round(max(e.lag for e in events), 3),
        },
        details={
            "broker_down_s": round(start_requested_at - stopped_at, 3),
            "broker_start_s": round(back_at - start_requested_at, 3),
            "broker_stop_s": round(stopped_at - stop_requested_at, 3),
            "normal_lag_ms": round(normal * 1000, 1),
            "baseline_lag_ms": percentiles_ms(baseline),
            "lag_above_normal_s": None if recovered_at is None else round(recovered_at - stopped_at, 3),
            "events": len(events),
            "paths": paths(events),
            **load_details(sent),
        },
        series={
            "lag": lag_points(events, started_at),
            "throughput": per_second(events, started_at),
            "marks": {
                "stop requested": stop_requested_at - started_at,
                "broker down": stopped_at - started_at,
                "broker back": back_at - started_at,
                **({"recovered": recovered_at - started_at} if recovered_at is not None else {}),
            },
            "normal_lag_ms": normal * 1000,
        },
    )


def recovery_point(events: Sequence[AppliedEvent], normal: float, since: float) -> float | None:
    """The start of the first one-second window of commits (from `since`) after which every window's p90
    lag is within `normal`; None when the last window is not."""
    windows: dict[int, list[float]] = {}
    for event in events:
        if event.occurred_at >= since:
            windows.setdefault(int((event.occurred_at - since) / WINDOW_S), []).append(event.lag)
    if not windows:
        return None
    late = [index for index, lags in windows.items() if (percentile(lags, WINDOW_PERCENTILE) or 0) > normal]
    if max(late, default=-1) == max(windows):
        return None
    return since + (max(late, default=-1) + 1) * WINDOW_S


def _baseline(events: Sequence[AppliedEvent], started_at: float, stop_requested_at: float) -> list[float]:
    return [e.lag for e in events if started_at + WARM_UP_S <= e.occurred_at < stop_requested_at]


def _normal_lag(events: Sequence[AppliedEvent], started_at: float, stop_requested_at: float) -> float:
    return max(
        2 * (percentile(_baseline(events, started_at, stop_requested_at), 99) or 0.0), NORMAL_LAG_FLOOR_S
    )


def _until_recovered(
    context: Context, before: int, normal: float, stopped_at: float, back_at: float
) -> float:
    """Keeps the load going until the lag has been normal for `outage_after_seconds` since the broker came
    back, judged on commits old enough that they must be applied by now, or until the cap; returns the
    commit time up to which it judged (every commit, if the cap was reached)."""
    mode, readings = context.mode, context.readings

    def judged_up_to() -> float | None:
        settled = time.time() - SETTLED_S
        if readings.caught_up(before, settled):
            events = [e for e in readings.applied(before, MAX_POSITION) if e.occurred_at < settled]
            recovered = recovery_point(events, normal, since=stopped_at)
            if recovered is not None and settled - max(recovered, back_at) >= mode.outage_after_seconds:
                return settled
        waited = time.time() - back_at
        share = 0.55 + 0.4 * min(waited / mode.outage_max_recovery_seconds, 1.0)
        context.progress.update(share, f"broker back {waited:.0f} s, waiting for normal lag")
        return None

    cap = back_at + mode.outage_max_recovery_seconds - time.time()
    return poll(judged_up_to, max(cap, 0.0), interval=0.5) or math.inf
