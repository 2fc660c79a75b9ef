"""The figures of /lab/api/pipeline, one snapshot per poll (CONTRACT.md, "The live view").

Counters are passed on as they are (totals since each process started): the page turns two snapshots into
rates, so this server keeps no state between polls and any of its workers can answer any poll. The lag is
the exact p50/p99 of the events applied in the last seconds, from the read database, which records both
instants cqrs_end_to_end_lag_seconds observes (commit on the write side, apply here).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from cqrs_common import config
from cqrs_common.metrics_page import MetricsPage
from read_service.lab_view.broker_depth import queue_depths_cached
from read_service.lab_view.read_db import read_database_view
from read_service.lab_view.scrape import metrics_pages
from read_service.projections.models import PATHS

RECENT_EVENTS = 12


def pipeline_snapshot() -> dict[str, Any]:
    pages = metrics_pages(
        {
            "write-service": config.lab_write_metrics_url(),
            "relay": config.lab_relay_metrics_url(),
            "projector": config.lab_projector_metrics_url(),
        }
    )
    depths = queue_depths_cached()
    read_db = read_database_view(RECENT_EVENTS)
    projector = _projector(pages["projector"])
    return {
        "generated_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "write_service": _write_service(pages["write-service"]),
        "relay": _relay(pages["relay"]),
        "broker": {"up": depths.up, "queue_depth": depths.queue, "dead_letter_depth": depths.dead_letter},
        "projector": projector,
        "read_db": {
            "up": read_db.up,
            "lag": None if read_db.lag is None else asdict(read_db.lag),
            "recent_events": [asdict(event) for event in read_db.events],
        },
        "active_path": projector["mode"],
    }


def _write_service(page: MetricsPage | None) -> dict[str, Any]:
    if page is None:
        return {"up": False}
    # Every command is a POST (CONTRACT.md, "Write API"), refused ones included.
    posts = page.sample("django_http_requests_total_by_method_total", method="POST")
    return {"up": True, "commands_total": posts or 0.0}


def _relay(page: MetricsPage | None) -> dict[str, Any]:
    if page is None:
        return {"up": False}
    return {
        "up": True,
        "outbox_backlog": page.sample("cqrs_outbox_backlog"),
        "outbox_oldest_age_seconds": page.sample("cqrs_outbox_oldest_age_seconds"),
        "published_total": page.sample("cqrs_events_published_total") or 0.0,
        "slot_retained_bytes": page.sample("cqrs_replication_slot_retained_bytes"),
        "broker_blocked": page.sample("cqrs_broker_blocked") == 1,
    }


def _projector(page: MetricsPage | None) -> dict[str, Any]:
    if page is None:
        return {"up": False, "mode": None}
    active = [path for path in PATHS if page.sample("cqrs_projection_mode", path=path) == 1]
    return {
        "up": True,
        "mode": active[0] if len(active) == 1 else None,
        "applied_total": {path: page.sample("cqrs_events_applied_total", path=path) or 0.0 for path in PATHS},
        "duplicates_total": page.sample("cqrs_events_duplicate_total") or 0.0,
        "dead_lettered_total": page.sample("cqrs_events_dead_lettered_total") or 0.0,
    }
