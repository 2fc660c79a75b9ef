"""The read database's subscription to the event log: is it working, and putting it back when it is not.

`replication_status()` reads what any role may read on the read database (the subscription, its apply
worker, the table's sync state) and, given a connection string of the publisher, the replication slot's
`wal_status`. It is cheap enough for a health check (`python -m read_service replication_status`).

`resubscribe_events()` is the way back from a slot whose WAL was removed (`wal_status = 'lost'`: the
subscriber fell further behind than `max_slot_wal_keep_size` allows and can never catch up from it): drop
the subscription (and its slot), empty the replica table, and subscribe again with `copy_data = true`, so
the table is copied whole and streamed from then on. PostgreSQL lets only a superuser do that, so it runs
with an administrator's connection string, never the service's own role.

While the copy runs the replica table is incomplete: `verify_read_models` reports the accounts whose log
is short as ahead of the log (not drift), and the projector's replication path re-reads rows it has seen
(the apply step ignores them as duplicates).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2
from django.db import connection
from psycopg2 import sql

from cqrs_common.logging import get_logger
from read_service.projections.event_log.connect import admin_cursor, read_only_cursor
from read_service.projections.event_log.rows import REPLICA_TABLE
from read_service.projections.event_log.subscription import subscription_read

log = get_logger(__name__)

DEFAULT_PUBLICATION = "cqrs_events"
SUBSCRIPTION_SUFFIX = "_events"  # the subscription is named after the read database (replication.sh)
READY = "r"  # pg_subscription_rel.srsubstate once the initial copy is done and streaming has caught up
DROP_ATTEMPTS = 10
STATUS_APPLICATION_NAME = "replication_status"
APPLICATION_NAME = "resubscribe_events"


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
        with read_only_cursor(publisher_dsn, application_name=STATUS_APPLICATION_NAME) as cursor:
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


@dataclass(frozen=True, slots=True)
class Resubscribed:
    subscription: str
    rows: int  # in the replica table once the copy is done
    seconds: float
    slot_left_on_publisher: bool  # the old slot could not be dropped (publisher unreachable): drop it there


class ResubscribeError(Exception):
    pass


def resubscribe_events(
    *,
    admin_dsn: str,
    publisher_conninfo: str | None = None,
    subscription: str | None = None,
    publication: str | None = None,
    timeout: float = 600.0,
) -> Resubscribed:
    """Drops and re-creates the subscription, the replica table re-copied whole; returns once in sync.

    `admin_dsn`: a superuser on the read database. `publisher_conninfo`: how the read database's server
    reaches the publisher (default: the conninfo of the existing subscription)."""
    started = time.monotonic()
    with admin_cursor(admin_dsn, application_name=APPLICATION_NAME) as cursor:
        cursor.execute("SELECT current_database(), rolsuper FROM pg_roles WHERE rolname = current_user")
        database, superuser = cursor.fetchone()
        if not superuser:
            raise ResubscribeError("REPLICATION_ADMIN_DATABASE_URL must be a superuser of the read database")
        name = subscription or database + SUBSCRIPTION_SUFFIX
        cursor.execute(
            "SELECT subconninfo, subpublications, subslotname FROM pg_subscription WHERE subname = %s "
            "AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [name],
        )
        existing = cursor.fetchone()
        conninfo = publisher_conninfo or (existing[0] if existing else None)
        if not conninfo:
            raise ResubscribeError(f"no subscription {name} to take the publisher from: give its conninfo")
        publication = publication or (existing[1][0] if existing else DEFAULT_PUBLICATION)
        slot_left = _drop(cursor, name, existing[2], conninfo) if existing else False
        cursor.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(REPLICA_TABLE)))
        cursor.execute(
            # streaming = off, as deploy/compose/replication/subscriber.sql creates it: whole transactions.
            sql.SQL(
                "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = true, streaming = off)"
            ).format(sql.Identifier(name), sql.Literal(conninfo), sql.Identifier(publication))
        )
        log.info("events_subscribed", subscription=name, publication=publication)
        rows = _wait_until_ready(cursor, name, started + timeout)
    result = Resubscribed(name, rows, time.monotonic() - started, slot_left)
    log.info("events_resubscribed", subscription=name, rows=rows, seconds=round(result.seconds, 3))
    return result


def _drop(cursor: Any, name: str, slot: str | None, conninfo: str) -> bool:
    """Drops the subscription and its slot; True if the slot had to be left on an unreachable publisher."""
    cursor.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(name)))
    for attempt in range(1, DROP_ATTEMPTS + 1):
        try:
            # Also drops the slot on the publisher; the walsender of the disabled worker may take a moment to
            # let go of it ("replication slot ... is active").
            cursor.execute(sql.SQL("DROP SUBSCRIPTION {}").format(sql.Identifier(name)))
            log.info("events_unsubscribed", subscription=name, slot=slot)
            return False
        except psycopg2.errors.ObjectInUse:
            time.sleep(0.2 * attempt)
        except psycopg2.OperationalError as exc:  # the publisher cannot be reached: keep the slot there
            log.warning("publisher_connection_failed", subscription=name, error=str(exc).strip())
            break
    cursor.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(sql.Identifier(name)))
    cursor.execute(sql.SQL("DROP SUBSCRIPTION {}").format(sql.Identifier(name)))
    left = slot is not None and not _drop_slot(conninfo, slot)
    log.warning("events_unsubscribed", subscription=name, slot=slot, slot_left_on_publisher=left)
    return left


def _drop_slot(conninfo: str, slot: str) -> bool:
    """Drops a slot that DROP SUBSCRIPTION could not (so the new subscription can create its own)."""
    try:
        with admin_cursor(conninfo, application_name=APPLICATION_NAME) as cursor:
            cursor.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                [slot],
            )
        return True
    except psycopg2.Error as exc:
        log.warning("replication_slot_drop_failed", slot=slot, error=str(exc).strip())
        return False


def _wait_until_ready(cursor: Any, name: str, deadline: float) -> int:
    while True:
        found = subscription_read(cursor, table=REPLICA_TABLE, name=name)
        state = found.table_state if found else None
        if state == READY:
            cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(REPLICA_TABLE)))
            return cursor.fetchone()[0]
        if time.monotonic() > deadline:
            raise ResubscribeError(f"subscription {name} not in sync in time (state {state})")
        time.sleep(0.2)


@contextmanager
def _cursor(dsn: str | None) -> Iterator[Any]:
    """Django's connection (the service's own role will do), or a read-only one to `dsn`."""
    if dsn is None:
        with connection.cursor() as cursor:
            yield cursor
        return
    with read_only_cursor(dsn, application_name=STATUS_APPLICATION_NAME) as cursor:
        yield cursor
