"""HTTP: deposits per second against the write-service and account reads per second against the
read-service, each with wrk (2 threads, 8 connections, a random account of the run per request)."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict

from bench.http_load import DEPOSIT_SCRIPT, READ_SCRIPT, WrkResult, run_wrk
from bench.scenarios.common import Context, ScenarioResult, wait_applied


def http(context: Context) -> ScenarioResult:
    readings, seconds = context.readings, context.mode.http_seconds
    context.pipeline_on_bench_vhost()
    before = readings.last_position()
    deposits = _timed(context, 0.0, "deposits (wrk)", context.system.write_api, DEPOSIT_SCRIPT)
    # Reads are measured once the projector has caught up, so they do not compete with its backlog.
    committed = readings.committed_after(before)
    wait_applied(context, before, committed.last_position, committed.count, detail="projecting deposits")
    reads = _timed(context, 0.5, "account reads (wrk)", context.system.read_api, READ_SCRIPT)
    return ScenarioResult(
        metrics={
            "http_deposit_rps": round(deposits.requests_per_s, 1),
            "http_deposit_latency_p50_ms": deposits.latency_ms.get("p50"),
            "http_deposit_latency_p99_ms": deposits.latency_ms.get("p99"),
            "http_read_rps": round(reads.requests_per_s, 1),
            "http_read_latency_p50_ms": reads.latency_ms.get("p50"),
            "http_read_latency_p99_ms": reads.latency_ms.get("p99"),
        },
        details={"deposit": asdict(deposits), "read": asdict(reads), "seconds": seconds, "connections": 8},
    )


def _timed(context: Context, start: float, what: str, base_url: str, script: str) -> WrkResult:
    """wrk in a thread while the bar moves over half of the step."""
    seconds = context.mode.http_seconds
    outcome: dict[str, WrkResult | BaseException] = {}

    def run() -> None:
        try:
            outcome["result"] = run_wrk(base_url, script, context.accounts, seconds)
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["result"] = exc

    worker = threading.Thread(target=run, daemon=True)
    began = time.monotonic()
    worker.start()
    while worker.is_alive():
        elapsed = time.monotonic() - began
        context.progress.update(start + 0.5 * min(elapsed / seconds, 1), f"{what} {elapsed:.0f}/{seconds} s")
        worker.join(0.2)
    result = outcome["result"]
    if isinstance(result, BaseException):
        raise result
    return result
