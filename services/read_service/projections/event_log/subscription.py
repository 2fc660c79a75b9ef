"""The subscription that feeds the replica table: the one query for its state, and the two views of it.

The query reads only what any role on the read database may read (no `subconninfo`), so the projector's
fallback, `/api/projection` and `replication_status` all read it with their own connections:

- `subscription_status()`: streaming, stopped, disabled or absent, on Django's connection: what the
  fallback logs when it changes and `/api/projection` shows;
- `replication_status()`: the same subscription with what is wrong with it and, given a connection string of
  the publisher, the replication slot's `wal_status`: cheap enough for a health check
  (`python -m read_service replication_status`). A slot whose WAL is lost is put back by `resubscribe.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2
from django.db import connection

from cqrs_common.logging import get_logger
from read_service.projections.event_log.connect import read_only_cursor
from read_service.projections.event_log.rows import REPLICA_TABLE

log = get_logger(__name__)

SUBSCRIPTION_SUFFIX = "_events"  # the subscription is named after the read database (replication.sh)
APPLICATION_NAME = "replication_status"
READY = "r"  # pg_subscription_rel.srsubstate once the initial copy is done and streaming has caught up

# One subscription of this database: the one named, else the first (by name) that writes `table`. The
# table's sync state is NULL when the subscription does not write it. `pid` is the apply worker's (the row
# of pg_stat_subscription without a relid; table sync workers have one).
_SUBSCRIPTION = """
SELECT s.subname, s.subenabled, s.subslotname, w.pid IS NOT NULL, w.last_msg_receipt_time,
       coalesce(st.apply_error_count, 0), coalesce(st.sync_error_count, 0), r.srsubstate
  FROM pg_subscription s
  LEFT JOIN pg_subscription_rel r ON r.srsubid = s.oid AND r.srrelid = to_regclass(%(table)s)
  LEFT JOIN pg_stat_subscription w ON w.subid = s.oid AND w.relid IS NULL
  LEFT JOIN pg_stat_subscription_stats st ON st.subid = s.oid
 WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND (s.subname = %(name)s OR (%(name)s IS NULL AND r.srsubid IS NOT NULL))
 ORDER BY s.subname
 LIMIT 1
"""


@dataclass(frozen=True, slots=True)
class Subscription:
    name: str
    enabled: bool
    slot: str | None
    worker_running: bool
    last_message_at: datetime | None  # the last message (data or keepalive) from the publisher
    apply_errors: int  # since the statistics were reset: conflicts on the replica count here
    sync_errors: int
    table_state: str | None  # of the table: i, d (copying), f, s, r (ready); None: not subscribed


def subscription_read(cursor: Any, *, table: str, name: str | None = None) -> Subscription | None:
    """The subscription `name` (None: the one that writes `table`), or None when there is none."""
    cursor.execute(_SUBSCRIPTION, {"table": table, "name": name})
    row = cursor.fetchone()
    if row is None:
        return None
    name, enabled, slot, worker, received_at, apply_errors, sync_errors, table_state = row
    return Subscription(
        name, enabled, slot, worker, received_at, int(apply_errors), int(sync_errors), table_state
    )


# ------------------------------------------------------------------ streaming, stopped, disabled, absent

STREAMING = "streaming"  # its apply worker runs
STOPPED = "stopped"  # enabled, but no worker: it fails (a conflicting row, a lost slot, no publisher)
DISABLED = "disabled"  # ALTER SUBSCRIPTION ... DISABLE
ABSENT = "absent"  # no subscription feeds the replica (replication.sh did not run)


@dataclass(frozen=True, slots=True)
class SubscriptionStatus:
    status: str
    subscription: str | None = None
    apply_errors: int = 0  # since the statistics were reset: conflicts on the replica count here
    last_received_at: datetime | None = None  # the last message (data or keepalive) from the publisher

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "subscription": self.subscription,
            "apply_errors": self.apply_errors,
            "last_received_at": self.last_received_at.isoformat() if self.last_received_at else None,
        }


def subscription_status(table: str = REPLICA_TABLE) -> SubscriptionStatus:
    """The subscription that writes the replica, as this database sees it (readable without privileges).

    A lost slot on the publisher shows here as `stopped`: the worker fails to start streaming, and the reason
    is only in the read server's log; the relay, which sees the publisher, logs `replication_slot_lost`.
    """
    with connection.cursor() as cursor:
        found = subscription_read(cursor, table=table)
    if found is None:
        return SubscriptionStatus(ABSENT)
    status = DISABLED if not found.enabled else STREAMING if found.worker_running else STOPPED
    return SubscriptionStatus(status, found.name, found.apply_errors, found.last_message_at)


# ------------------------------------------------------------------------------- what is wrong with it


@dataclass(frozen=True, slots=True)
class ReplicationStatus:
    subscription: str
    exists: bool
    enabled: bool = False
    worker_running: bool = False
    table_state: str | None = None  # of the replica table: i, d (copying), f, s, r (ready)
    last_message_at: datetime | None = None  # last message from the publisher (keepalives included)
    errors: int = 0  # apply and sync errors since the statistics were reset
    slot_name: str | None = None
    slot_wal_status: str | None = None  # reserved, extended, unreserved, lost; None: publisher not asked
    slot_active: bool | None = None
    problems: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields["last_message_at"] = self.last_message_at.isoformat() if self.last_message_at else None
        fields["problems"] = list(self.problems)
        return {**fields, "healthy": self.healthy}


def replication_status(
    *, subscription: str | None = None, publisher_dsn: str | None = None, dsn: str | None = None
) -> ReplicationStatus:
    """The read database's subscription (default `<database>_events`) as it stands now.

    `dsn`: the read database (default: Django's connection, the service's own role will do);
    `publisher_dsn`: the write database, to read the slot's `wal_status` (skipped if None or unreachable)."""
    with _cursor(dsn) as cursor:
        cursor.execute("SELECT current_database()")
        name = subscription or cursor.fetchone()[0] + SUBSCRIPTION_SUFFIX
        found = subscription_read(cursor, table=REPLICA_TABLE, name=name)
    if found is None:
        return ReplicationStatus(name, exists=False, problems=(f"subscription {name} does not exist",))
    enabled, slot, worker, table_state = found.enabled, found.slot, found.worker_running, found.table_state
    errors = found.apply_errors + found.sync_errors
    wal_status, active, slot_problem = _slot(publisher_dsn, slot)
    problems = [
        *([] if enabled else ["subscription disabled"]),
        *([] if worker or not enabled else [f"apply worker not running ({errors} error(s) so far)"]),
        *([] if table_state == READY else [f"replica table not in sync (state {table_state})"]),
        *([slot_problem] if slot_problem else []),
    ]
    return ReplicationStatus(
        name,
        exists=True,
        enabled=enabled,
        worker_running=worker,
        table_state=table_state,
        last_message_at=found.last_message_at,
        errors=errors,
        slot_name=slot,
        slot_wal_status=wal_status,
        slot_active=active,
        problems=tuple(problems),
    )


def _slot(publisher_dsn: str | None, slot: str | None) -> tuple[str | None, bool | None, str | None]:
    if publisher_dsn is None or slot is None:
        return None, None, None
    try:
        with read_only_cursor(publisher_dsn, application_name=APPLICATION_NAME) as cursor:
            cursor.execute("SELECT wal_status, active FROM pg_replication_slots WHERE slot_name = %s", [slot])
            row = cursor.fetchone()
    except psycopg2.Error as exc:
        log.warning("publisher_connection_failed", error=str(exc).strip())
        return None, None, None
    if row is None:
        return None, None, f"replication slot {slot} missing on the publisher"
    wal_status, active = row
    problem = {
        "lost": f"replication slot {slot} lost its WAL: run `python -m read_service resubscribe_events`",
        "unreserved": f"replication slot {slot} is about to lose its WAL",
    }.get(wal_status)
    return wal_status, active, problem


@contextmanager
def _cursor(dsn: str | None) -> Iterator[Any]:
    """Django's connection (the service's own role will do), or a read-only one to `dsn`."""
    if dsn is None:
        with connection.cursor() as cursor:
            yield cursor
        return
    with read_only_cursor(dsn, application_name=APPLICATION_NAME) as cursor:
        yield cursor
