"""The subscription that writes the replica table, read from the catalogs: the one query for its state.

Everything here is readable by any role on the read database (no `subconninfo`), so the projector's
fallback, `/api/projection` and `replication_status` all read the same query with their own connections.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
