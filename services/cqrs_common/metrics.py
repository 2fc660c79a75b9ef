"""The one module that defines the contract's Prometheus metrics (CONTRACT.md, "Metrics").

Lag histograms share buckets from 1 ms to 60 s. The web services add django-prometheus on top; the relay
and the projector expose these through `serve_metrics` on their own port.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# 1 ms .. 60 s: the steady-state target is a few ms, an outage is tens of seconds.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

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

# projector
EVENTS_APPLIED = Counter("cqrs_events_applied", "Events applied to the read DB", ["type", "path"])
EVENTS_DUPLICATE = Counter(
    "cqrs_events_duplicate", "Deliveries ignored because already applied", ["path"]
)
EVENTS_DEAD_LETTERED = Counter(
    "cqrs_events_dead_lettered", "Messages sent to the dead-letter queue", ["reason"]
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

PATHS = ("broker", "replication")


def set_projection_mode(active: str) -> None:
    for path in PATHS:
        PROJECTION_MODE.labels(path=path).set(1 if path == active else 0)


def serve_metrics(port: int, registry: CollectorRegistry = REGISTRY) -> None:
    """Expose /metrics for a non-web process (relay, projector) on its own port."""
    start_http_server(port, registry=registry)
