"""The event log as the read side sees it: rows of an `events` table turned into events of the contract.

The log is the replica table `public.events` in the read database (logical replication of the write side's
event store), or any database holding a table `events` with the same columns (the optional event store, or
the write database itself). Rows are validated exactly as messages are (`from_dict`), so an event the
projector would refuse is refused here too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cqrs_common.events import EventEnvelope, format_timestamp, from_dict

# The published columns (deploy/local/replication.sh), in the order `event_from_row` reads them.
LOG_COLUMNS = (
    "position, event_id, aggregate_type, aggregate_id, aggregate_version, event_type, schema_version, "
    "data::text, occurred_at, correlation_id, causation_id"
)
REPLICA_TABLE = "public.events"


def event_from_row(row: Sequence[Any]) -> EventEnvelope:
    """An event from a row selected with `LOG_COLUMNS`; raises `InvalidEvent` as `from_wire` would."""
    (position, event_id, aggregate_type, aggregate_id, version, event_type, schema_version, data, occurred_at,
     correlation_id, causation_id) = row  # fmt: skip
    return from_dict(
        {
            "event_id": str(event_id),
            "type": event_type,
            "schema_version": schema_version,
            "aggregate_type": aggregate_type,
            "aggregate_id": str(aggregate_id),
            "aggregate_version": version,
            "position": position,
            "occurred_at": format_timestamp(occurred_at),
            "correlation_id": correlation_id,
            "causation_id": causation_id,
            "data": json.loads(data),
        }
    )
