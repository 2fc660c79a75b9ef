"""The one module that defines the contract's Prometheus metrics (CONTRACT.md, "Metrics").

Lag histograms share buckets from 0.5 ms to 60 s, finest below 100 ms where the pipeline's lag lives. Every
metric lives in the default registry (so a test can read any of them with `REGISTRY.get_sample_value`), but
the relay and the projector each serve only their own on their port: `serve_metrics(port, process="relay")`
exports the relay's metrics plus the standard `process_*` and `python_*` ones, so the relay never shows a
projector gauge stuck at zero. On the same port they answer `/readyz` and `/healthz` from their loops'
heartbeats (`cqrs_common.heartbeat`). The web services export django-prometheus's metrics through gunicorn's
multiprocess directory (see `gunicorn_conf`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any, Literal
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from cqrs_common import config
from cqrs_common.events import EVENT_TYPES
from cqrs_common.heartbeat import WorkerHealth

# 1 ms .. 60 s: the steady-state target is a few ms, an outage is tens of seconds. 1 s (the lag SLO the alerts
# use) is a bucket boundary, so the alert's quantile is exact at the threshold.
# A p99 is interpolated inside the bucket it falls in (histogram_quantile, the benchmark's stages): steps of
# 0.5 to 2.5 ms up to 10 ms keep the estimate of a millisecond-scale p99 (the targets are 5 and 15 ms) honest.
LAG_BUCKETS = (
    0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip

# relay
OUTBOX_BACKLOG = Gauge("cqrs_outbox_backlog", "Events committed but not yet confirmed by RabbitMQ")
OUTBOX_OLDEST_AGE = Gauge(
    "cqrs_outbox_oldest_age_seconds", "Age of the oldest unpublished event (0 when none)"
)
EVENTS_PUBLISHED = Counter("cqrs_events_published", "Events confirmed by RabbitMQ", ["type"])
PUBLISH_LAG = Histogram(
    "cqrs_publish_lag_seconds", "Commit of the event to publisher confirm", buckets=LAG_BUCKETS
)
REPLICATION_SLOT_RETAINED = Gauge(
    "cqrs_replication_slot_retained_bytes", "WAL kept for the read side's subscription", ["slot"]
)
BROKER_BLOCKED = Gauge(
    "cqrs_broker_blocked", "1 while RabbitMQ blocks the relay's publishing (a resource alarm), 0 otherwise"
)

# projector
EVENTS_APPLIED = Counter("cqrs_events_applied", "Events applied to the read DB", ["type", "path"])
EVENTS_DUPLICATE = Counter("cqrs_events_duplicate", "Deliveries ignored because already applied", ["path"])
EVENTS_DEAD_LETTERED = Counter(
    "cqrs_events_dead_lettered", "Messages sent to the dead-letter queue", ["reason"]
)
# With partitions an account's events reach one projector in order; a parked event is the safety net at work.
EVENTS_PARKED = Counter(
    "cqrs_events_parked", "Events that arrived ahead of their predecessor and were parked", ["path"]
)
PARTITION_ACTIVE = Gauge(
    "cqrs_projector_partition_active",
    "1 once this projector received from the partition on its current connection (its active consumer)",
    ["partition"],
)
PROJECTOR_ORDINAL = Gauge(
    "cqrs_projector_ordinal",
    "This projector's number, which says the partitions it owns (claimed at start when auto); -1 for a spare",
)
PARTITION_DELIVERIES = Counter(
    "cqrs_projector_partition_deliveries",
    "Messages this projector received from each partition",
    ["partition"],
)
CONSUME_LAG = Histogram(
    "cqrs_consume_lag_seconds", "Publish (message timestamp) to applied", buckets=LAG_BUCKETS
)
END_TO_END_LAG = Histogram(
    "cqrs_end_to_end_lag_seconds",
    "Event commit (occurred_at) to applied in the read DB",
    buckets=LAG_BUCKETS,
)
PROJECTION_MODE = Gauge("cqrs_projection_mode", "1 for the active path, 0 for the other", ["path"])
PROJECTOR_FAILURES = Counter(
    "cqrs_projector_failures",
    "Failures the projector survived: consumer (loop restarted), apply (batch applied one by one), "
    "replication_fallback (round retried)",
    ["component"],
)
PROJECTOR_COMPONENTS = ("consumer", "apply", "replication_fallback")

# reporting: the second subscriber (read_service/reporting), catch-up from the log then live from its queue
REPORTING_EVENTS_COUNTED = Counter(
    "cqrs_reporting_events_counted", "Events counted into the reporting read model", ["type", "path"]
)
REPORTING_EVENTS_DUPLICATE = Counter(
    "cqrs_reporting_events_duplicate", "Events skipped by reporting because already counted", ["path"]
)
REPORTING_EVENTS_DEAD_LETTERED = Counter(
    "cqrs_reporting_events_dead_lettered", "Messages reporting sent to its dead-letter queue", ["reason"]
)
REPORTING_LAG_SECONDS = Gauge(
    "cqrs_reporting_lag_seconds",
    "Commit (occurred_at) to counted of the last batch reporting counted; 0 while it has nothing to count",
)
REPORTING_LAG_EVENTS = Gauge(
    "cqrs_reporting_lag_events", "Events waiting for reporting: unread rows of the log, ready messages"
)
REPORTING_PHASE = Gauge("cqrs_reporting_phase", "1 for the subscriber's phase, 0 for the other", ["phase"])
REPORTING_PATHS = ("history", "live")
REPORTING_PHASES = ("catching_up", "live")

# read-service (gunicorn workers: multiprocess mode, exported by django-prometheus's /metrics)
READ_WAITS_IN_FLIGHT = Gauge(
    "cqrs_read_waits_in_flight", "Read-your-writes waits being held", multiprocess_mode="livesum"
)
READ_WAITS_REFUSED = Counter(
    "cqrs_read_waits_refused", "Read-your-writes waits refused at once: the process held its maximum"
)

PATHS = ("broker", "replication")

Process = Literal["relay", "projector", "reporting"]
METRICS_OF: dict[str, tuple[Collector, ...]] = {
    "relay": (
        OUTBOX_BACKLOG,
        OUTBOX_OLDEST_AGE,
        EVENTS_PUBLISHED,
        PUBLISH_LAG,
        REPLICATION_SLOT_RETAINED,
        BROKER_BLOCKED,
    ),
    "projector": (
        EVENTS_APPLIED,
        EVENTS_DUPLICATE,
        EVENTS_DEAD_LETTERED,
        EVENTS_PARKED,
        PARTITION_ACTIVE,
        PROJECTOR_ORDINAL,
        PARTITION_DELIVERIES,
        CONSUME_LAG,
        END_TO_END_LAG,
        PROJECTION_MODE,
        PROJECTOR_FAILURES,
    ),
    "reporting": (
        REPORTING_EVENTS_COUNTED,
        REPORTING_EVENTS_DUPLICATE,
        REPORTING_EVENTS_DEAD_LETTERED,
        REPORTING_LAG_SECONDS,
        REPORTING_LAG_EVENTS,
        REPORTING_PHASE,
    ),
}
_RUNTIME_COLLECTORS = (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR)


def set_projection_mode(active: str) -> None:
    for path in PATHS:
        PROJECTION_MODE.labels(path=path).set(1 if path == active else 0)


def set_partitions_active(partitions: int, active: set[int]) -> None:
    """Every partition's gauge: 1 for those in `active`, 0 for the others (standby, or no connection)."""
    for partition in range(partitions):
        PARTITION_ACTIVE.labels(partition=str(partition)).set(1 if partition in active else 0)


def set_reporting_phase(active: str) -> None:
    for phase in REPORTING_PHASES:
        REPORTING_PHASE.labels(phase=phase).set(1 if phase == active else 0)


def registry_for(process: Process) -> CollectorRegistry:
    """A registry holding only `process`'s contract metrics and the process/python runtime metrics.

    Counters for every known label value start at 0 here: Prometheus sees no increase in a series whose
    first sample is already 1, so the first event of a type would be missing from every rate() otherwise.
    """
    if process not in METRICS_OF:
        raise ValueError(f"no metrics are defined for {process!r}; expected one of {sorted(METRICS_OF)}")
    _start_known_series_at_zero(process)
    return _registry_of((*METRICS_OF[process], *_RUNTIME_COLLECTORS))


def _start_known_series_at_zero(process: str) -> None:
    if process == "relay":
        for event_type in EVENT_TYPES:
            EVENTS_PUBLISHED.labels(type=event_type)
    if process == "projector":
        for component in PROJECTOR_COMPONENTS:
            PROJECTOR_FAILURES.labels(component=component)
        for path in PATHS:
            EVENTS_DUPLICATE.labels(path=path)
            EVENTS_PARKED.labels(path=path)
            for event_type in EVENT_TYPES:
                EVENTS_APPLIED.labels(type=event_type, path=path)
    if process == "reporting":
        for path in REPORTING_PATHS:
            REPORTING_EVENTS_DUPLICATE.labels(path=path)
            for event_type in EVENT_TYPES:
                REPORTING_EVENTS_COUNTED.labels(type=event_type, path=path)


def _process_named(name: str) -> Process | None:
    return name if name in METRICS_OF else None  # type: ignore[return-value]


def _registry_of(collectors: Iterable[Collector]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    for collector in collectors:
        registry.register(collector)
    return registry


def serve_metrics(
    port: int,
    registry: CollectorRegistry | None = None,
    *,
    process: Process | None = None,
    addr: str = "0.0.0.0",
    health: WorkerHealth | None = None,
) -> ThreadingWSGIServer:
    """Expose /metrics for a non-web process (relay, projector) on its own port, in a daemon thread.

    With `process` (by default SERVICE_NAME, when it names the relay or the projector), only that process's
    metrics are served; otherwise the whole default registry. With `health`, the same port answers `/readyz`
    and `/healthz` from the process's loops (CONTRACT.md). prometheus_client's own server thread, with one
    WSGI app in front of its metrics app: nothing of the loops runs in the thread that answers the probes.
    """
    if registry is None:
        process = process or _process_named(config.service_name(""))
        registry = registry_for(process) if process else REGISTRY
    # `*_created` series double the output and nothing here reads them.
    disable_created_metrics()
    app = _with_health(make_wsgi_app(registry), health) if health is not None else make_wsgi_app(registry)
    server = make_server(addr, port, app, ThreadingWSGIServer, handler_class=_SilentHandler)
    threading.Thread(target=server.serve_forever, name=f"metrics-{port}", daemon=True).start()
    return server


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _with_health(metrics_app: WsgiApp, health: WorkerHealth) -> WsgiApp:
    probes = {"/readyz": health.readiness, "/healthz": health.liveness}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        probe = probes.get(environ.get("PATH_INFO", ""))
        if probe is None:
            return metrics_app(environ, start_response)
        status, body = probe()
        payload = json.dumps(body).encode()
        reason = "OK" if status == 200 else "Service Unavailable"
        start_response(
            f"{status} {reason}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    return app


class _SilentHandler(WSGIRequestHandler):
    """No access log line per scrape or probe (a probe every few seconds would drown the process's log)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass
