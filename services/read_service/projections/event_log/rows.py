"""A row of the event log as an event: the one way, whichever table, database or path the row comes from.

The database turns a row into its wire form (the event of docs/CONTRACT.md, as JSON text) with `wire_sql`,
the one place the log's columns are named; `event_read` turns that into an event exactly as a message is
read (`from_dict`, which upcasts a row stored with an older schema version, cqrs_common/upcasting.py), or,
when it is no valid event of this contract (a type or a schema version this release does not know, say),
into the dead-letter record that keeps it, as read, for `dlq replay`. The wire form is the row as stored:
the upcast happens in Python, in `from_dict`, like a message's. The replica table, the event store and
parked events (stored in the same wire form) all go through it, so the apply step cannot tell the paths
apart. The wire form is built by the database so that a row whose columns no valid event could hold (an
odd timestamp, say) still arrives, to be refused here, instead of failing the whole fetch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cqrs_common.events import EventEnvelope, InvalidEvent, from_dict
from read_service.projections.dead_letters import DeadLetterEntry, dead_letter_unreadable

# The replica of the write side's `events` in the read database (deploy/compose/replication/subscriber.sql).
REPLICA_TABLE = "public.events"
# The log in the optional event store: unqualified, as that database's own role sees it.
EVENT_STORE_TABLE = "events"


def wire_sql(row: str) -> str:
    """SQL for the wire form of a row of the log (`row` is the table's alias), as JSON text. The columns are
    the published ones (deploy/compose/replication/publisher.sql)."""
    return f"""json_build_object(
        'event_id', {row}.event_id, 'type', {row}.event_type, 'schema_version', {row}.schema_version,
        'aggregate_type', {row}.aggregate_type, 'aggregate_id', {row}.aggregate_id,
        'aggregate_version', {row}.aggregate_version, 'position', {row}.position,
        'occurred_at', {row}.occurred_at, 'correlation_id', {row}.correlation_id,
        'causation_id', {row}.causation_id, 'data', {row}.data)::text"""


def event_read(wire: dict[str, Any]) -> EventEnvelope | DeadLetterEntry:
    """The event a stored row holds, or the dead-letter record of a row that is no valid event."""
    try:
        return from_dict(wire)
    except InvalidEvent as exc:
        return dead_letter_unreadable(wire, exc)


@dataclass(frozen=True, slots=True)
class LogEvents:
    """Rows turned into what the apply step takes: events, and dead-letter records for rows that are not
    valid events of this contract."""

    events: list[EventEnvelope]
    refused: list[DeadLetterEntry]


def events_read(wires: Iterable[dict[str, Any]]) -> LogEvents:
    events: list[EventEnvelope] = []
    refused: list[DeadLetterEntry] = []
    for wire in wires:
        read = event_read(wire)
        if isinstance(read, DeadLetterEntry):
            refused.append(read)
        else:
            events.append(read)
    return LogEvents(events, refused)
