"""The two logs a rebuild reads, behind one interface (`EventLog`): the replica table, and the event store.

The log is the replica table `public.events` in the read database (logical replication of the write side's
event store), or any database holding a table `events` with the same columns (the optional event store, or
the write database itself). Rows come in their wire form (rows.py), read exactly as messages are, so an
event the projector would refuse is refused here too.
"""

from __future__ import annotations

from typing import Any, Protocol
from uuid import UUID

from read_service.projections.event_log.connect import read_only_connect
from read_service.projections.event_log.rows import EVENT_STORE_TABLE, REPLICA_TABLE, wire_sql

# A row of a log as the rebuild reads it: where it stands, which event, and the event (rows.py).
LOG_ROW = f"e.position, e.event_id, {wire_sql('e')}"


class ReplicaTableLog:
    """The replica table of the read database: read on the rebuild's own connection, so what the shadow lacks
    is found by one join (unqualified `applied_events` and `pending_events` are the shadow's)."""

    source = f"replica table {REPLICA_TABLE}"

    def rows_after_position(self, cursor: Any, position: int, limit: int) -> list[tuple]:
        cursor.execute(
            f"SELECT {LOG_ROW} FROM {REPLICA_TABLE} e WHERE position > %s ORDER BY position LIMIT %s",
            [position, limit],
        )
        return cursor.fetchall()

    def rows_unapplied(self, cursor: Any, refused: set[UUID], limit: int) -> list[tuple]:
        """Up to `limit` rows neither applied nor parked in the tables `cursor` sees, nor in `refused`."""
        cursor.execute(
            f"""
            SELECT {LOG_ROW} FROM {REPLICA_TABLE} e
             WHERE NOT EXISTS (SELECT FROM applied_events a WHERE a.event_id = e.event_id)
               AND NOT EXISTS (SELECT FROM pending_events p WHERE p.event_id = e.event_id)
               AND e.event_id <> ALL(%s::uuid[])
             ORDER BY e.position LIMIT %s
            """,
            [[str(event_id) for event_id in refused], limit],
        )
        return cursor.fetchall()

    def holding(self, cursor: Any, event_ids: list[UUID]) -> set[UUID]:
        """Which of `event_ids` the log holds."""
        cursor.execute(
            f"SELECT event_id FROM {REPLICA_TABLE} WHERE event_id = ANY(%s::uuid[])",
            [[str(event_id) for event_id in event_ids]],
        )
        return {_uuid(event_id) for (event_id,) in cursor.fetchall()}

    def close(self) -> None:
        pass


class EventStoreLog:
    """The `events` table of the optional event store (EVENT_STORE_DATABASE_URL), a database of its own
    subscribed to the write side's publication with the replica's DDL (its own `replica_seq`).

    No join reaches across databases, so what arrived since the build read the log is found by `replica_seq`:
    the subscription applies the publisher's transactions one after another in commit order, so a row never
    becomes visible below a `replica_seq` already seen (see replica.py). `seen` is how far the log was read:
    everything up to the highest `replica_seq` visible when the log was opened (all of it committed by then,
    so the position scan that follows reads it), then whatever `rows_unapplied` passed."""

    source = "event store"

    def __init__(self, dsn: str, application_name: str = "rebuild_read_models") -> None:
        self._connection = read_only_connect(dsn, application_name=application_name)
        with self._connection.cursor() as store:
            store.execute("SELECT to_regclass(%s) IS NOT NULL", [EVENT_STORE_TABLE])
            if not store.fetchone()[0]:
                self.close()
                raise LookupError("the event store has no events table: set up its subscription first")
            store.execute(f"SELECT coalesce(max(replica_seq), 0) FROM {EVENT_STORE_TABLE}")
            self.seen: int = store.fetchone()[0]

    def rows_after_position(self, cursor: Any, position: int, limit: int) -> list[tuple]:
        with self._connection.cursor() as store:
            store.execute(
                f"SELECT {LOG_ROW} FROM {EVENT_STORE_TABLE} e WHERE position > %s ORDER BY position LIMIT %s",
                [position, limit],
            )
            return store.fetchall()

    def rows_unapplied(self, cursor: Any, refused: set[UUID], limit: int) -> list[tuple]:
        """Rows past `seen` that the tables `cursor` sees neither applied nor parked (nor in `refused`),
        reading on until some are found or the log ends; `seen` moves past every row read."""
        while True:
            with self._connection.cursor() as store:
                store.execute(
                    f"SELECT replica_seq, {LOG_ROW} FROM {EVENT_STORE_TABLE} e WHERE replica_seq > %s "
                    "ORDER BY replica_seq LIMIT %s",
                    [self.seen, limit],
                )
                batch = store.fetchall()
            if not batch:
                return []
            self.seen = batch[-1][0]
            rows = [row[1:] for row in batch]
            ids = [str(row[1]) for row in rows]
            cursor.execute(
                "SELECT event_id FROM applied_events WHERE event_id = ANY(%(ids)s::uuid[]) "
                "UNION ALL SELECT event_id FROM pending_events WHERE event_id = ANY(%(ids)s::uuid[])",
                {"ids": ids},
            )
            known = {_uuid(event_id) for (event_id,) in cursor.fetchall()} | refused
            unapplied = [row for row in rows if _uuid(row[1]) not in known]
            if unapplied:
                return unapplied

    def holding(self, cursor: Any, event_ids: list[UUID]) -> set[UUID]:
        """Which of `event_ids` the log holds as far as it was read (up to `seen`): one received since is
        still to be read, not one the rebuild failed to apply."""
        with self._connection.cursor() as store:
            store.execute(
                f"SELECT event_id FROM {EVENT_STORE_TABLE} WHERE event_id = ANY(%s::uuid[]) "
                "AND replica_seq <= %s",
                [[str(event_id) for event_id in event_ids], self.seen],
            )
            return {_uuid(event_id) for (event_id,) in store.fetchall()}

    def close(self) -> None:
        self._connection.close()


class EventLog(Protocol):
    """What a rebuild reads a log with. Rows are (position, event_id, wire form as JSON text)."""

    source: str

    def rows_after_position(self, cursor: Any, position: int, limit: int) -> list[tuple]: ...

    def rows_unapplied(self, cursor: Any, refused: set[UUID], limit: int) -> list[tuple]: ...

    def holding(self, cursor: Any, event_ids: list[UUID]) -> set[UUID]: ...

    def close(self) -> None: ...


def event_log_open(event_store_dsn: str | None) -> EventLog:
    """The event store's log when its URL is given, else the replica table."""
    return ReplicaTableLog() if event_store_dsn is None else EventStoreLog(event_store_dsn)


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))
