"""The subscription that feeds the replica table: the one query for its state, and its status.

The query reads only what any role on the read database may read (no `subconninfo`), so the projector's
fallback, `/api/projection` (`subscription_status`: streaming, stopped, disabled or absent) and the operator's
`replication_status` (replication_admin.py) all read it with their own connections.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection

from read_service.projections.event_log.rows import REPLICA_TABLE

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
