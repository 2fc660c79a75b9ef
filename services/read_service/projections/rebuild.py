"""Rebuilds every read model from the event log into shadow tables, then swaps them in at once.

The shadow tables live in the schema `read_rebuild` under the same names as the live ones (created with
`LIKE ... INCLUDING ALL`, indexes renamed to the live names, grants copied). The events are applied by the
projector's own apply step and handlers (`apply_events`, `PROJECTIONS`) with `search_path` set to that schema
alone, so the same code writes the shadow tables and nothing else: a table the apply step writes that has no
shadow here fails the rebuild loudly instead of touching a live table.

Steps, while the live models keep being served and the projector keeps applying:
1. build: the log in position order, in batches of one transaction each. The log is the event store's
   `events` table when its URL is given (EVENT_STORE_DATABASE_URL: the optional third PostgreSQL), else the
   replica table `public.events` (event_log/logs.py);
2. catch up: events committed out of position order, or since, are found by what the shadow lacks;
3. swap, in ONE transaction: lock every table the projector writes in EXCLUSIVE mode (queries go on, the
   projector waits), catch up again, and make sure every event the projector has applied is in the shadow
   (if the log has not received one yet, wait for it; if the rebuild could not apply one, give up); copy the
   live tracking times, move parked events along, set the counters; then, in ACCESS EXCLUSIVE mode, drop
   the live tables and move the shadow ones into `public`. Queries that arrive meanwhile wait and then read
   the new tables; none sees an empty or half-built model;
4. drain: a parked event whose predecessor the rebuild applied (the live table parked it, the shadow caught
   up to it) is next now, and nothing that arrives later would apply it: such events are applied right
   after the swap commits (the replication fallback's rounds do the same, should this step not run).

Locks are taken with a short `lock_timeout` below `deadlock_timeout`: if a reader or the projector holds
what the swap needs, the swap gives way and retries (the projector is never made a deadlock victim).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.db import DatabaseError, OperationalError, connection, transaction

from cqrs_common.events import EventEnvelope
from cqrs_common.logging import get_logger
from read_service.projections.apply import PROJECTED_CHANNEL, REPLICATION, apply_events, parked_ready_drain
from read_service.projections.event_log.logs import EventLog, event_log_open
from read_service.projections.event_log.rows import event_read
from read_service.projections.models import APPLY_TABLES, BATCH_STATE_TABLES, REBUILT_TABLES

log = get_logger(__name__)

SHADOW = "read_rebuild"
SWAPPED = REBUILT_TABLES
# Written by the apply step too but kept live: shadows only so that the build never writes the live ones.
SCRATCH = tuple(table for table in APPLY_TABLES if table not in SWAPPED)
# What the projector writes with every batch: held EXCLUSIVE (reads go on) from the last catch-up to the swap.
PROJECTOR_TABLES = (*SWAPPED, *BATCH_STATE_TABLES)
REBUILD_LOCK = "cqrs-lab:read_models_rebuild"
CATCH_UP_BATCH = 2000
LOCK_WAIT = "200ms"  # below deadlock_timeout (1s by default)
LOCK_NOT_AVAILABLE = "55P03"


class RebuildRefused(Exception):
    """The rebuild stopped without swapping: the live read models are untouched."""


@dataclass(slots=True)
class RebuildReport:
    events_read: int = 0
    events_applied: int = 0
    accounts: int = 0
    failed: list[UUID] = field(default_factory=list)  # handler failed: the account stops there, as live
    unreadable: list[str] = field(default_factory=list)  # rows that are not valid events
    parked: int = 0  # events left waiting for a predecessor that never came
    drained: int = 0  # parked events the swap made next, applied after it
    build_seconds: float = 0.0
    swap_seconds: float = 0.0
    projector_paused_seconds: float = 0.0  # EXCLUSIVE locks held: the projector waited this long at most
    lock_retries: int = 0  # times the swap gave way to a reader or the projector holding a lock it needed


def read_models_rebuild(
    *,
    batch_size: int = 500,
    lock_timeout: float = 60.0,
    log_wait: float = 30.0,
    before_swap: Callable[[], None] | None = None,
    event_store_dsn: str | None = None,
) -> RebuildReport:
    """Rebuilds and swaps; raises `RebuildRefused` (live models untouched) when it cannot do so safely.

    `batch_size`: events per build transaction (the projector's: every money event updates its currency's
    totals row, and each update of a row already updated in the same transaction costs a little more);
    `lock_timeout`: how long to keep trying to take the swap's locks; `log_wait`: how long to wait for the log
    to receive events the projector has applied already; `before_swap`: called once the shadow is built;
    `event_store_dsn`: the event store to read the log from instead of the replica table."""
    if connection.in_atomic_block:
        raise RuntimeError("a rebuild runs its own transactions: call it outside a transaction")
    report = RebuildReport()
    started = time.monotonic()
    with _only_rebuild():
        event_log = event_log_open(event_store_dsn)
        try:
            _shadow_create()
            build = _Build(report, event_log)
            build.from_positions(batch_size)
            build.catch_up()
            _copy_tracking_times(only_changed=False)
            _analyze()
            report.build_seconds = time.monotonic() - started
            if before_swap is not None:
                before_swap()
            _wait_for_log(build, log_wait)
            swap_started = time.monotonic()
            _swap(build, lock_timeout, log_wait)
            report.swap_seconds = time.monotonic() - swap_started
            report.drained = _drain_ready()
        finally:
            event_log.close()
            _shadow_drop()
    log.info(
        "read_models_rebuilt",
        source=event_log.source,
        events=report.events_applied,
        accounts=report.accounts,
        failed=len(report.failed),
        unreadable=len(report.unreadable),
        build_seconds=round(report.build_seconds, 3),
        projector_paused_ms=round(report.projector_paused_seconds * 1000, 1),
    )
    return report


class _Build:
    """Feeds events of the log to the apply step, inside the shadow schema."""

    def __init__(self, report: RebuildReport, event_log: EventLog) -> None:
        self.report = report
        self.log = event_log
        self.refused: set[UUID] = set()  # failed or unreadable: never offered again

    def from_positions(self, batch_size: int) -> None:
        position = 0
        while True:
            with _in_shadow() as cursor:
                rows = self.log.rows_after_position(cursor, position, batch_size)
                if not rows:
                    return
                position = rows[-1][0]
                self.apply(rows)

    def catch_up(self) -> int:
        """Applies what the shadow lacks (committed out of position order, or since); returns how many."""
        total = 0
        while True:
            with _in_shadow() as cursor:
                rows = self.log.rows_unapplied(cursor, self.refused, CATCH_UP_BATCH)
                progressed = self.apply(rows) if rows else 0
            total += progressed
            if not progressed:
                return total

    def apply(self, rows: Sequence[tuple]) -> int:
        events = []
        for position, event_id, wire in rows:
            read = event_read(json.loads(wire))
            if isinstance(read, EventEnvelope):
                events.append(read)
                continue
            self.refused.add(event_id if isinstance(event_id, UUID) else UUID(str(event_id)))
            self.report.unreadable.append(str(event_id))
            log.warning(
                "unreadable_event_skipped",
                event_id=str(event_id),
                position=position,
                error=f"{read.reason}: {read.detail}",
            )
        outcome = apply_events(events, path=REPLICATION)
        for failure in outcome.failed:
            self.refused.add(failure.event.event_id)
            self.report.failed.append(failure.event.event_id)
        self.report.events_read += len(rows)
        self.report.events_applied += len(outcome.applied)
        return len(outcome.applied) + len(outcome.parked)


def _wait_for_log(build: _Build, timeout: float) -> None:
    """Before locking anything: until the log holds every event the projector applied (or `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        build.catch_up()
        lagging, _ = _not_in_shadow(build.log)
        if not lagging or time.monotonic() > deadline:
            return
        time.sleep(0.1)


def _not_in_shadow(event_log: EventLog) -> tuple[int, list[UUID]]:
    """Events applied live that the shadow lacks: how many the log has not received yet (or the build has not
    read yet), and the ids of those it has (the rebuild could not apply them)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT l.event_id FROM public.applied_events l
             WHERE NOT EXISTS (SELECT FROM {SHADOW}.applied_events s WHERE s.event_id = l.event_id)
            """
        )
        missing = [event_id for (event_id,) in cursor.fetchall()]
        in_log = event_log.holding(cursor, missing) if missing else set()
    return len(missing) - len(in_log), [event_id for event_id in missing if event_id in in_log]


def _swap(build: _Build, lock_timeout: float, log_wait: float) -> None:
    deadline = time.monotonic() + lock_timeout
    while True:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'")
                cursor.execute(f"LOCK TABLE {_live(PROJECTOR_TABLES)} IN EXCLUSIVE MODE")
                paused = time.monotonic()
                _last_catch_up(build, log_wait)
                _settle(cursor, build.report)
                _exclusive(cursor, deadline, build.report)
                for table in SWAPPED:
                    cursor.execute(f"DROP TABLE public.{table}")
                    cursor.execute(f"ALTER TABLE {SHADOW}.{table} SET SCHEMA public")
            build.report.projector_paused_seconds = time.monotonic() - paused
            return
        except OperationalError as exc:
            if not _lock_not_available(exc) or time.monotonic() > deadline:
                raise
            build.report.lock_retries += 1
            log.info("rebuild_swap_deferred", retries=build.report.lock_retries)
            time.sleep(random.uniform(0.05, 0.25))


def _drain_ready() -> int:
    """Applies the parked events that are next since the swap. After it commits, not in it: the apply step
    takes account locks, which a projector waiting on the swap's table locks may hold (a deadlock); the
    projector applying meanwhile is harmless, the versions are read again under the account locks."""
    drained = 0
    while True:
        outcome = parked_ready_drain(path=REPLICATION)
        drained += len(outcome.applied)
        if not outcome.applied:
            return drained


def _last_catch_up(build: _Build, log_wait: float) -> None:
    """Under the EXCLUSIVE locks: the shadow must hold every event the projector applied."""
    deadline = time.monotonic() + log_wait
    while True:
        build.catch_up()
        lagging, lost = _not_in_shadow(build.log)
        if lost:
            raise RebuildRefused(
                f"{len(lost)} event(s) applied live could not be applied from the log, e.g. {lost[0]}; "
                "the live read models were kept"
            )
        if not lagging:
            return
        if time.monotonic() > deadline:
            raise RebuildRefused(f"the log still lacks {lagging} event(s) the projector applied")
        time.sleep(0.05)


def _settle(cursor: Any, report: RebuildReport) -> None:
    """Bookkeeping that must agree with the rebuilt models, in the swap's transaction."""
    _copy_tracking_times(only_changed=True)
    # Read-your-writes waiters of accounts the rebuild moved on (NOTIFY is delivered at commit).
    cursor.execute(
        f"""
        SELECT count(pg_notify(%s, n.account_id::text))
          FROM {SHADOW}.account_view n LEFT JOIN public.account_view o ON o.account_id = n.account_id
         WHERE o.version IS DISTINCT FROM n.version
        """,
        [PROJECTED_CHANNEL],
    )
    # Parked events the rebuild has applied are done; those it parked itself wait on in the live table.
    cursor.execute(
        f"""
        INSERT INTO public.pending_events SELECT * FROM {SHADOW}.pending_events ON CONFLICT DO NOTHING;
        DELETE FROM public.pending_events p
         USING (SELECT aggregate_id, max(version) AS version FROM {SHADOW}.applied_events GROUP BY 1) a
         WHERE p.aggregate_id = a.aggregate_id AND p.version <= a.version;
        SELECT (SELECT count(*) FROM {SHADOW}.pending_events), (SELECT count(*) FROM {SHADOW}.account_view)
        """
    )
    report.parked, report.accounts = cursor.fetchone()
    cursor.execute(
        f"""
        INSERT INTO public.projector_state AS s (id, mode, events_applied, last_event_at)
        SELECT 1, 'broker', count(*), max(occurred_at) FROM {SHADOW}.applied_events
        ON CONFLICT (id) DO UPDATE SET events_applied = EXCLUDED.events_applied,
            last_event_at = greatest(s.last_event_at, EXCLUDED.last_event_at)
        """
    )


def _copy_tracking_times(*, only_changed: bool) -> None:
    """When and by which path the projector applied each event is history worth keeping (lag windows read
    applied_at): copied from the live tracking rows, all of them before the swap, what changed since in it."""
    changed = "AND (s.applied_at, s.path) IS DISTINCT FROM (l.applied_at, l.path)" if only_changed else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {SHADOW}.applied_events s SET applied_at = l.applied_at, path = l.path
              FROM public.applied_events l WHERE l.event_id = s.event_id {changed}
            """
        )


def _exclusive(cursor: Any, deadline: float, report: RebuildReport) -> None:
    """Upgrades to ACCESS EXCLUSIVE on the swapped tables, giving way to readers until `deadline`."""
    while True:
        try:
            with transaction.atomic():  # a savepoint: a timed-out attempt keeps the EXCLUSIVE locks
                cursor.execute(f"LOCK TABLE {_live(SWAPPED)} IN ACCESS EXCLUSIVE MODE")
            return
        except OperationalError as exc:
            if not _lock_not_available(exc) or time.monotonic() > deadline:
                raise
            report.lock_retries += 1
            time.sleep(random.uniform(0.01, 0.05))


def _shadow_create() -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {SHADOW} CASCADE; CREATE SCHEMA {SHADOW}")
        for table in (*SWAPPED, *SCRATCH):
            cursor.execute(f"CREATE TABLE {SHADOW}.{table} (LIKE public.{table} INCLUDING ALL)")
            _name_indexes_as_live(cursor, table)
        _copy_grants(cursor)


def _name_indexes_as_live(cursor: Any, table: str) -> None:
    """LIKE names the copied indexes after their columns; give them the live names (migrations use them)."""
    cursor.execute(
        """
        SELECT n.nspname, c.relname,
               regexp_replace(pg_get_indexdef(i.indexrelid), ' INDEX \\S+ ON \\S+ ', ' ON ')
          FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE i.indrelid IN (%s::regclass, %s::regclass)
        """,
        [f"public.{table}", f"{SHADOW}.{table}"],
    )
    rows = cursor.fetchall()
    live = {definition: name for schema, name, definition in rows if schema == "public"}
    for schema, name, definition in rows:
        target = live.get(definition)
        if schema == SHADOW and target and target != name:
            cursor.execute(f'ALTER INDEX {SHADOW}."{name}" RENAME TO "{target}"')


def _copy_grants(cursor: Any) -> None:
    cursor.execute(
        """
        SELECT c.relname, a.privilege_type,
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END  -- quoted as needed
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY(%s) AND a.grantee <> c.relowner
        """,
        [list(SWAPPED)],
    )
    for table, privilege, grantee in cursor.fetchall():
        cursor.execute(f"GRANT {privilege} ON {SHADOW}.{table} TO {grantee}")


def _analyze() -> None:
    """Planner statistics before the tables serve queries (autovacuum would take a while)."""
    with connection.cursor() as cursor:
        for table in SWAPPED:
            cursor.execute(f"ANALYZE {SHADOW}.{table}")


def _shadow_drop() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {SHADOW} CASCADE")
    except DatabaseError as exc:  # the next rebuild drops it first; keep the error that brought us here
        log.warning("rebuild_shadow_drop_failed", schema=SHADOW, error=str(exc))


@contextmanager
def _in_shadow() -> Iterator[Any]:
    """A transaction whose unqualified table names are the shadow tables, and only those.

    On its own (not inside the swap) it commits without waiting for the WAL flush: a crash loses the shadow,
    never the live models, and the rebuild starts over."""
    on_its_own = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL search_path TO {SHADOW}")
        if on_its_own:
            cursor.execute("SET LOCAL synchronous_commit = off")
        yield cursor


@contextmanager
def _only_rebuild() -> Iterator[None]:
    """One rebuild at a time (a session-level advisory lock), else `RebuildRefused`."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [REBUILD_LOCK])
        if not cursor.fetchone()[0]:
            raise RebuildRefused("another rebuild is running")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [REBUILD_LOCK])


def _live(tables: Sequence[str]) -> str:
    return ", ".join(f"public.{table}" for table in tables)


def _lock_not_available(exc: OperationalError) -> bool:
    return getattr(exc.__cause__, "pgcode", None) == LOCK_NOT_AVAILABLE
