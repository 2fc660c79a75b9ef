"""verify_read_models against the real read database: clean models, drift of each kind, events in flight."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal

from django.db import connection

from read_service.projections.verify import read_models_verify
from tests.integration.read.conftest import transfer
from tests.integration.read.replica_log import LoggedAccount, ReplicaLog, project, replica_log_fixture  # noqa: F401


def _accounts() -> tuple[list[LoggedAccount], list]:
    alice, bob, carol = LoggedAccount("alice"), LoggedAccount("bob"), LoggedAccount("carol", "SEK")
    events = [alice.opened(), bob.opened(), carol.opened(), alice.deposited("100.00")]
    events += [carol.deposited("7.05"), *transfer(alice, bob, "40.50"), alice.withdrawn("9.99")]
    events += [bob.withdrawn("40.50"), bob.closed()]
    return [alice, bob, carol], events


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "read_service", "verify_read_models", *args],
        env={**os.environ, "LOG_FORMAT": "json", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _logged(result: subprocess.CompletedProcess[str], event: str) -> list[dict]:
    output = (result.stdout + result.stderr).splitlines()
    lines = [json.loads(line) for line in output if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def _sql(statement: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def test_models_projected_from_the_log_are_clean(replica_log: ReplicaLog) -> None:
    _, events = _accounts()
    replica_log.append(events)
    project(events)

    report = read_models_verify()

    assert report.clean and report.settled, report
    assert (report.accounts_checked, report.events_checked) == (3, len(events))
    result = _cli()
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"clean: 3 account(s), {len(events)} event(s)" in result.stdout
    (summary,) = _logged(result, "read_models_verified")
    assert (summary["drifted"], summary["accounts"]) == (0, 3)


def test_drift_of_each_read_model_is_found_and_named(replica_log: ReplicaLog) -> None:
    (alice, bob, carol), events = _accounts()
    dave = LoggedAccount("dave")
    events += [dave.opened(), dave.deposited("1.00"), dave.deposited("2.00")]
    replica_log.append(events)
    project(events)
    _sql("UPDATE account_view SET balance = balance + 1 WHERE account_id = %s", [alice.account_id])
    _sql("UPDATE account_view SET status = 'open' WHERE account_id = %s", [bob.account_id])
    _sql(
        "UPDATE statement_lines SET balance_after = 3.01 WHERE account_id = %s AND version = 3",
        [dave.account_id],
    )
    _sql("DELETE FROM statement_lines WHERE account_id = %s AND version = 2", [carol.account_id])

    report = read_models_verify()

    drifts = {d.account_id: d for d in report.drifts}
    assert drifts.keys() == {alice.account_id, bob.account_id, carol.account_id, dave.account_id}
    assert drifts[alice.account_id].fields == {"balance": (Decimal("49.51"), Decimal("50.51"))}
    assert drifts[bob.account_id].fields == {"status": ("closed", "open")}
    assert drifts[carol.account_id].fields == {"lines": (1, 0)}
    assert drifts[carol.account_id].detail == "line 2 missing: v2 deposit 7.05 -> 7.05"
    assert drifts[dave.account_id].fields.keys() == {"statement"}
    assert drifts[dave.account_id].detail == (
        "line 3: expected v3 deposit 2.00 -> 3.00, found v3 deposit 2.00 -> 3.01"
    )
    # currency_totals was left alone: it still equals the fold, whatever the account rows say.
    assert report.total_drifts == []
    result = _cli()
    assert result.returncode == 1, result.stdout + result.stderr
    for account in (alice, bob, carol, dave):
        assert f"DRIFT account {account.account_id}" in result.stdout
    logged = _logged(result, "read_model_drift_found")
    assert {line["account_id"] for line in logged} == {str(a.account_id) for a in (alice, bob, carol, dave)}
    (alice_line,) = [line for line in logged if line["account_id"] == str(alice.account_id)]
    assert (alice_line["fields"], alice_line["expected"], alice_line["actual"]) == (
        ["balance"],
        {"balance": "49.51"},
        {"balance": "50.51"},
    )


def test_totals_missing_accounts_and_stray_rows_are_drift(replica_log: ReplicaLog) -> None:
    (alice, _, _), events = _accounts()
    replica_log.append(events)
    project(events)
    stray = LoggedAccount("mallory")
    _sql("UPDATE currency_totals SET total_balance = total_balance - 5 WHERE currency = 'SEK'")
    _sql("DELETE FROM account_view WHERE account_id = %s", [alice.account_id])
    _sql("INSERT INTO account_view VALUES (%s, 'm', 'EUR', 0, 'open', 1, now(), now())", [stray.account_id])

    report = read_models_verify()

    drifts = {d.account_id: d.fields for d in report.drifts}
    assert drifts == {
        alice.account_id: {"account": ("projected", "absent")},
        stray.account_id: {"account": ("absent", "projected")},
    }
    (sek,) = report.total_drifts
    assert (sek.currency, sek.expected, sek.actual) == (
        "SEK",
        (Decimal("7.05"), 1, 1),
        (Decimal("2.05"), 1, 1),
    )


def test_events_in_flight_are_not_drift(replica_log: ReplicaLog) -> None:
    behind, ahead, unseen = LoggedAccount("behind"), LoggedAccount("ahead"), LoggedAccount("unseen")
    behind_events = [behind.opened(), behind.deposited("5.00"), behind.deposited("6.00")]
    ahead_events = [ahead.opened(), ahead.deposited("1.00")]
    unseen_events = [unseen.opened()]
    # The projector has applied `behind` up to version 2 and all of `ahead`; the log has all of `behind`,
    # `ahead` only up to version 1 (the replica lags the broker), and `unseen` which nothing applied yet.
    replica_log.append([*behind_events, ahead_events[0], *unseen_events])
    project([*behind_events[:2], *ahead_events])

    report = read_models_verify()

    assert report.clean, report.drifts
    assert (report.behind_log, report.ahead_of_log, report.not_projected) == (
        [behind.account_id],
        [ahead.account_id],
        [unseen.account_id],
    )
    assert report.events_checked == 2  # `behind` up to its applied version; `ahead` cannot be checked yet
    result = _cli("--wait", "0.3")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "in flight: 1 account(s) behind the log" in result.stdout

    # Drift below the applied version of an account in flight is still drift.
    _sql("UPDATE account_view SET balance = 4 WHERE account_id = %s", [behind.account_id])
    assert [d.account_id for d in read_models_verify().drifts] == [behind.account_id]
    _sql("UPDATE account_view SET balance = 5 WHERE account_id = %s", [behind.account_id])

    replica_log.append(ahead_events[1:])
    project([behind_events[2], *unseen_events])
    result = _cli("--wait", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "in flight" not in result.stdout


def test_a_separate_event_store_is_read_through_its_url(replica_log: ReplicaLog) -> None:
    (alice, _, _), events = _accounts()
    replica_log.append(events)
    project(events)
    # Any database with an `events` table of the log's columns will do: here the read database itself.
    database = connection.settings_dict
    url = (
        f"postgres://{database['USER']}:{database['PASSWORD']}@{database['HOST'] or '127.0.0.1'}:"
        f"{database['PORT'] or 5432}/{database['NAME']}"
    )
    assert read_models_verify(event_store_dsn=url).clean

    _sql("UPDATE account_view SET version = 9 WHERE account_id = %s", [alice.account_id])
    report = read_models_verify(event_store_dsn=url)
    assert [(d.account_id, d.fields) for d in report.drifts] == [(alice.account_id, {"version": (4, 9)})]
    result = _cli(EVENT_STORE_DATABASE_URL=url)
    assert result.returncode == 1 and "from the event store checked" in result.stdout, result.stdout
