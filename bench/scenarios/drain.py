"""Drain: a backlog committed through the service layer while the relay and the projector are down, then
both started; events per second from both being ready until the read model holds the last event."""

from __future__ import annotations

from bench.producers import run_producers
from bench.scenarios.common import Context, ScenarioResult, paths, per_second, wait_applied

COMMIT_SHARE = 0.5  # of the progress bar
PRODUCER_ACCOUNTS = 25


def drain(context: Context) -> ScenarioResult:
    mode, readings, progress = context.mode, context.readings, context.progress
    context.system.stop_pipeline()
    before = readings.last_position()
    target = mode.drain_events
    opening = mode.producers * PRODUCER_ACCOUNTS * 2  # each producer's accounts: opened and funded

    def committing() -> None:
        made = readings.last_position() - before
        progress.update(COMMIT_SHARE * made / target, f"committing {made:,}/{target:,} events, pipeline down")

    totals = run_producers(
        context.databases,
        count=mode.producers,
        events=max(target - opening, mode.producers),
        accounts=PRODUCER_ACCOUNTS,
        tick=committing,
    )
    committed = readings.committed_after(before)

    ready_at = context.start_pipeline_on_bench_vhost()
    progress.update(COMMIT_SHARE, "relay and projector started")
    wait_applied(context, before, committed.last_position, committed.count, detail="draining")
    events = readings.applied(before, committed.last_position)
    last_applied = max(event.applied_at for event in events)
    last_published = readings.last_published_at(committed.last_position)
    seconds = last_applied - ready_at
    commit_seconds = committed.last_occurred_at - committed.first_occurred_at
    return ScenarioResult(
        metrics={"drain_events_per_s": round(committed.count / seconds, 1)},
        details={
            "events": committed.count,
            "commands": totals.commands,
            "seconds_from_ready_to_last_applied": round(seconds, 3),
            "relay_seconds_from_ready_to_last_published": (
                round(last_published - ready_at, 3) if last_published else None
            ),
            "first_applied_after_ready_s": round(min(e.applied_at for e in events) - ready_at, 3),
            "commit_events_per_s": round(committed.count / commit_seconds, 1) if commit_seconds else None,
            "paths": paths(events),
        },
        series={"throughput": per_second(events, ready_at)},
    )
