"""rebuild_read_models against the real read database: the same models as the projector builds, served while
it runs, nothing the projector applies meanwhile lost, safe to run again, and refusals that change nothing."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, connections
from django.test import Client

from cqrs_common.messaging import Consumer
from devkit.polling import eventually
from read_service.projections.fallback import FallbackSettings, ReplicationFallback
from read_service.projections.models import REBUILT_TABLES
from read_service.projections.projector import Projector
from read_service.projections.rebuild import SHADOW, RebuildRefused, read_models_rebuild
from read_service.projections.verify import read_models_verify
from tests.integration.read.replica_log import (  # noqa: F401
    LoggedAccount,
    ReplicaLog,
    ledger,
    project,
    read_models_clear,
    replica_log_fixture,
)
from tests.integration.read.replica_log import read_models_snapshot as _models


def _schema() -> list[tuple]:
    """Index and constraint names and definitions of the swapped tables (migrations refer to them by name),
    and their grants."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT tablename, indexname, indexdef FROM pg_indexes
             WHERE schemaname = 'public' AND tablename = ANY(%(tables)s)
            UNION ALL
            SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
             WHERE conrelid::regclass::text = ANY(%(tables)s)
            UNION ALL
            SELECT relname, 'acl', relacl::text FROM pg_class
             WHERE relnamespace = 'public'::regnamespace AND relname = ANY(%(tables)s)
             ORDER BY 1, 2, 3
            """,
            {"tables": list(REBUILT_TABLES)},
        )
        return cursor.fetchall()


def _shadow_exists() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regnamespace(%s) IS NOT NULL", [SHADOW])
        return cursor.fetchone()[0]


def test_rebuild_equals_what_the_projector_built(replica_log: ReplicaLog) -> None:
    events = ledger(accounts=30, moves=400, closed=3)
    replica_log.append(events)
    project(events)
    with connection.cursor() as cursor:
        cursor.execute("GRANT SELECT ON statement_lines TO PUBLIC")  # say, for a reporting role
    built, schema = _models(), _schema()

    try:
        report = read_models_rebuild(batch_size=97)
        assert _schema() == schema
    finally:
        with connection.cursor() as cursor:
            cursor.execute("REVOKE SELECT ON statement_lines FROM PUBLIC")

    assert _models() == built
    assert (report.accounts, report.events_applied, report.failed, report.parked) == (30, len(events), [], 0)
    assert not _shadow_exists()
    assert read_models_verify().clean


def test_rebuild_repairs_drift_and_builds_from_nothing(replica_log: ReplicaLog) -> None:
    events = ledger(accounts=10, moves=100)
    replica_log.append(events)
    project(events)
    built = _models()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE account_view SET balance = balance + 1")
        cursor.execute("DELETE FROM statement_lines WHERE version = 3")
    assert not read_models_verify().clean

    read_models_rebuild()

    assert _models() == built
    read_models_clear()  # read DB lost: everything from the log alone
    read_models_rebuild()
    rebuilt = _models()
    models = ("accounts", "lines", "totals", "events_applied")
    assert [rebuilt[name] for name in models] == [built[name] for name in models]
    assert [row[:6] for row in rebuilt["applied"]] == [row[:6] for row in built["applied"]]
    assert {row[7] for row in rebuilt["applied"]} == {"replication"}  # applied from the log, not the broker


def test_rebuild_runs_again_to_the_same_models(replica_log: ReplicaLog) -> None:
    events = ledger(accounts=8, moves=60, closed=2)
    replica_log.append(events)
    read_models_rebuild()
    once = _models()

    read_models_rebuild()

    assert _models() == once
    assert once["events_applied"] == [(len(events),)]


def test_queries_are_served_all_through_the_rebuild(replica_log: ReplicaLog) -> None:
    events = ledger(accounts=40, moves=1500)
    replica_log.append(events)
    project(events)
    expected = _models()
    accounts = {row[0]: row for row in expected["accounts"]}
    lines = {a: sum(1 for line in expected["lines"] if line[0] == a) for a in accounts}
    totals = {row[0]: f"{row[1]:.2f}" for row in expected["totals"]}
    reader = _Reader(accounts, lines, totals)
    reader.start()
    holder = _LongReader()  # a query running when the swap wants its locks: the swap waits for it

    report = read_models_rebuild(before_swap=holder.start)

    time.sleep(0.2)
    reader.stop()
    holder.join()
    assert reader.failures == []
    assert reader.reads > 20
    assert len(reader.tables_seen) == 2, "the reader never read across the swap"
    assert report.lock_retries > 0  # the swap gave way to the long query
    assert _models() == expected


def test_events_the_projector_applies_during_the_rebuild_are_kept(replica_log: ReplicaLog) -> None:
    events = ledger(accounts=10, moves=200)
    replica_log.append(events)
    project(events)
    late, lagging = LoggedAccount("late"), LoggedAccount("lagging")
    late_events = [late.opened(), late.deposited("3.00")]
    lagging_events = [lagging.opened(), lagging.deposited("4.00")]

    def projector_moves_on() -> None:
        # Applied live after the shadow was built: one pair already in the log, one whose replication lags.
        replica_log.append(late_events)
        project(late_events + lagging_events)
        threading.Timer(0.5, replica_log.append, [lagging_events]).start()

    report = read_models_rebuild(before_swap=projector_moves_on)

    verified = read_models_verify()
    assert verified.clean and verified.settled
    assert verified.events_checked == len(events) + 4
    assert report.accounts == 12
    assert _models()["events_applied"] == [(len(events) + 4,)]


def test_a_running_projector_loses_nothing_to_a_rebuild(
    replica_log: ReplicaLog, broker_url: str, publish: Any, broker: Consumer
) -> None:
    events = ledger(accounts=20, moves=800)
    replica_log.append(events)
    project(events)
    # The projector as its command runs it: the broker loop and the replication fallback.
    stop = threading.Event()
    projector = Projector(
        lambda: Consumer(broker_url, connection_name="test-projector", prefetch=200),
        batch_size=50,
        receive_timeout=0.2,
        fallback=ReplicationFallback(FallbackSettings(grace_seconds=0.5, broker_interval=0.1)),
    )
    running = threading.Thread(target=projector.run, args=(stop,), daemon=True)
    running.start()
    feeder = _Feeder(replica_log, publish)
    feeder.start()

    try:
        report = read_models_rebuild()
    finally:
        feeder.stop()
    total = len(events) + feeder.sent
    try:
        eventually(lambda: _applied_count() == total, timeout=30)
    finally:
        stop.set()
        running.join(timeout=15)
    assert feeder.sent > 0 and feeder.sent_during_rebuild > 0
    verified = read_models_verify()
    assert verified.clean and verified.settled, verified
    assert verified.events_checked == total
    assert report.events_applied >= len(events)


def test_a_rebuild_that_would_lose_an_applied_event_changes_nothing(replica_log: ReplicaLog) -> None:
    events = ledger(accounts=5, moves=30)
    bad = LoggedAccount("bad")
    opened, deposited = bad.opened(), bad.deposited("5.00")
    project([*events, opened, deposited])
    # The log's copy of the deposit is not what the projector applied: the handler refuses it.
    copy = type(deposited)(**{**_fields(deposited), "data": {"amount": "-5.00"}})
    replica_log.append([*events, opened, copy])
    before = _models()

    with pytest.raises(RebuildRefused, match="could not be applied from the log"):
        read_models_rebuild()

    assert _models() == before
    assert not _shadow_exists()


def test_a_row_that_is_no_event_stops_its_account_as_the_projector_would(replica_log: ReplicaLog) -> None:
    frozen = LoggedAccount("frozen")
    opened, unknown, deposited = frozen.opened(), frozen.next("AccountFrozen"), frozen.deposited("1.00")
    replica_log.append([opened, unknown, deposited])
    project([opened])  # the projector dead-lettered the unknown type; the deposit waits behind it

    report = read_models_rebuild()

    assert (report.unreadable, report.parked) == ([str(unknown.event_id)], 1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT version FROM account_view")
        assert cursor.fetchall() == [(1,)]
        cursor.execute("SELECT aggregate_id, version FROM pending_events")
        assert cursor.fetchall() == [(frozen.account_id, 3)]


def test_a_parked_event_the_rebuild_made_next_is_applied(replica_log: ReplicaLog) -> None:
    """The live projector parked version 3 (version 2 never came by the broker); the log holds 2, not 3 yet.
    The rebuild applies 2: 3 is next then, and must not wait for an event that will never come."""
    alice = LoggedAccount("alice")
    opened, second, third = alice.opened(), alice.deposited("2.00"), alice.deposited("3.00")
    replica_log.append([opened, second])
    project([opened, third])
    with connection.cursor() as cursor:
        cursor.execute("SELECT version FROM pending_events")
        assert cursor.fetchall() == [(3,)]

    report = read_models_rebuild()

    with connection.cursor() as cursor:
        cursor.execute("SELECT version, balance FROM account_view")
        assert cursor.fetchall() == [(3, Decimal("5.00"))]
        cursor.execute("SELECT count(*) FROM pending_events")
        assert cursor.fetchone()[0] == 0
        cursor.execute("SELECT version FROM applied_events ORDER BY version")
        assert cursor.fetchall() == [(1,), (2,), (3,)]
    assert report.drained == 1


def test_a_rebuild_waits_for_the_log_only_so_long(replica_log: ReplicaLog) -> None:
    events = ledger(accounts=5, moves=30)
    replica_log.append(events[:-1])  # the last event never reaches the log
    project(events)
    before = _models()

    with pytest.raises(RebuildRefused, match="the log still lacks 1 event"):
        read_models_rebuild(log_wait=0.3)

    assert _models() == before


def test_one_rebuild_at_a_time(replica_log: ReplicaLog) -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtextextended('cqrs-lab:read_models_rebuild', 0))")
    try:
        with pytest.raises(RebuildRefused, match="another rebuild is running"):
            # The same session holds the lock in this test: a second session must be refused.
            _other_session(read_models_rebuild)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock_all()")


def test_the_command_rebuilds_and_reports(replica_log: ReplicaLog) -> None:
    events = ledger(accounts=6, moves=40)
    replica_log.append(events)

    result = subprocess.run(
        [sys.executable, "-m", "read_service", "rebuild_read_models", "--batch-size", "25"],
        env={**os.environ, "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"rebuilt 6 account(s) from {len(events)} event(s)" in result.stdout
    assert '"event": "read_models_rebuilt"' in result.stderr + result.stdout
    assert read_models_verify().clean


# ------------------------------------------------------------------------------------------------ helpers


def _fields(event: Any) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}


def _applied_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM applied_events")
        return cursor.fetchone()[0]


def _other_session(function: Any) -> Any:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except Exception as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


class _Reader(threading.Thread):
    """Reads the API (and the tables' identity) in a loop; records anything incomplete or failing."""

    def __init__(self, accounts: dict, lines: dict, totals: dict) -> None:
        super().__init__(daemon=True)
        self.accounts, self.lines, self.totals = accounts, lines, totals
        self.failures: list[str] = []
        self.reads = 0
        self.tables_seen: set[int] = set()
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)

    def run(self) -> None:
        client = Client()
        ids = list(self.accounts)
        try:
            while not self._stop_event.is_set():
                account_id = random.choice(ids)
                try:
                    self._check(client, account_id)
                except Exception as exc:  # anything at all is a failure of "always served"
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                self.reads += 1
        finally:
            connection.close()

    def _check(self, client: Client, account_id: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 'account_view'::regclass::oid")
            self.tables_seen.add(cursor.fetchone()[0])
        stats = client.get("/api/stats")
        if stats.status_code != 200 or stats.json()["accounts"] != len(self.accounts):
            self.failures.append(f"stats {stats.status_code} {stats.content[:200]!r}")
        elif stats.json()["total_balance"] != self.totals:
            self.failures.append(f"totals {stats.json()['total_balance']}")
        account = client.get(f"/api/accounts/{account_id}")
        if account.status_code != 200 or Decimal(account.json()["balance"]) != self.accounts[account_id][3]:
            self.failures.append(f"account {account.status_code} {account.content[:200]!r}")
        statement = client.get(f"/api/accounts/{account_id}/transactions")
        if statement.status_code != 200 or statement.json()["count"] != self.lines[account_id]:
            self.failures.append(f"statement {statement.status_code} {statement.content[:200]!r}")


class _LongReader(threading.Thread):
    """A 1.5 s query over the read models, started just before the swap."""

    def __init__(self) -> None:
        super().__init__(daemon=True)

    def run(self) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*), pg_sleep(1.5) FROM account_view, currency_totals")
        finally:
            connection.close()

    def start(self) -> None:  # type: ignore[override]
        super().start()
        time.sleep(0.1)  # its locks are held before the swap starts


class _Feeder(threading.Thread):
    """The write side at work: new events in the log and, for most of them, on the broker too (a message now
    and then is lost: the projector's replication fallback brings that one)."""

    def __init__(self, replica_log: ReplicaLog, publish: Any) -> None:
        super().__init__(daemon=True)
        self.replica_log, self.publish = replica_log, publish
        self.sent = 0
        self.sent_during_rebuild = 0  # while the rebuild's shadow schema existed
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)

    def run(self) -> None:
        accounts: list[LoggedAccount] = []
        try:
            while not self._stop_event.is_set():
                if len(accounts) < 5 or random.random() < 0.2:
                    accounts.append(LoggedAccount("fed"))
                    batch = [accounts[-1].opened()]
                else:
                    batch = [random.choice(accounts).deposited("1.00") for _ in range(5)]
                self.replica_log.append(batch)
                if random.random() < 0.9:
                    self.publish(*batch)
                self.sent += len(batch)
                if _shadow_exists():
                    self.sent_during_rebuild += len(batch)
                time.sleep(0.02)
        finally:
            connection.close()
