"""Outage: steady load while the broker is stopped, on a private RabbitMQ node (the shared one is never
touched); the relay and the projector are moved to that node (the next scenario moves them back).

Timeline: load at 200 commands/s; after a baseline the node is stopped, stays down for the mode's outage,
is started again ("back" = when it serves AMQP again); load goes on until every event committed more than a
second ago is applied (or a cap), then a little longer, and stops.

Normal lag is max(2 x the baseline's p99, 50 ms). The pipeline has recovered at the first event committed
after the node was down from which one second of commits is all applied within normal lag;
`outage_recovery_s` is the time from the broker being back to that event being applied (0 if that happened
before it was back, e.g. through the replication path). The maximum lag is over every event of the scenario.
"""

from __future__ import annotations

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

NORMAL_LAG_FLOOR_S = 0.050
STABLE_WINDOW_S = 1.0  # of commits all within normal lag
CAUGHT_UP_MARGIN_S = 1.0
WARM_UP_S = 0.5  # the first commits of the baseline are left out of it


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
        _until_caught_up(context, before, back_at)
        sleep_with_progress(context, mode.outage_after_seconds, 0.8, 0.1, "after recovery")
    finally:
        sent = load.stop()
    committed = readings.committed_after(before)
    wait_applied(context, before, committed.last_position, committed.count, detail="last events")
    events = readings.applied(before, committed.last_position)

    baseline = [e.lag for e in events if started_at + WARM_UP_S <= e.occurred_at < stop_requested_at]
    normal = max(2 * (percentile(baseline, 99) or 0.0), NORMAL_LAG_FLOOR_S)
    # From when the node is down: while `rabbitmqctl stop` runs, the broker still delivers for a while.
    recovered_at = recovery_point(events, normal, since=stopped_at)
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
    """When the first event committed after `since` that starts a window of `STABLE_WINDOW_S` of commits
    all applied within `normal` lag was applied (`events` in commit order); None if none does."""
    later = [e for e in events if e.occurred_at >= since]
    late_index = -1  # the last late event found so far: a window must start after it
    for index, event in enumerate(later):
        if index <= late_index:
            continue
        window_end = event.occurred_at + STABLE_WINDOW_S
        for ahead in range(index, len(later)):
            if later[ahead].occurred_at > window_end:
                break
            if later[ahead].lag > normal:
                late_index = ahead
        if late_index < index:
            return event.applied_at
    return None


def _until_caught_up(context: Context, before: int, back_at: float) -> None:
    """Keeps the load going until every event committed more than a second ago is applied, or the cap."""
    cap = context.mode.outage_max_recovery_seconds
    while (waited := time.time() - back_at) < cap:
        if context.readings.caught_up(before, time.time() - CAUGHT_UP_MARGIN_S):
            return
        context.progress.update(0.55 + 0.25 * waited / cap, f"broker back, catching up {waited:.0f} s")
        time.sleep(0.25)
