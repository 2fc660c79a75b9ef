"""RabbitMQ stops: commands still succeed, and the replication fallback carries their events to the read side.

The write-service never needs RabbitMQ: a command commits the account and its events to the write database
and answers. While the broker is away the relay cannot publish (the outbox grows), but the read database
receives every committed event anyway through PostgreSQL logical replication of the `events` table; the
projector notices it lost the broker, switches its active path to `replication` (GET /api/projection shows
`mode`) and applies events from the replicated table through the same apply step. When RabbitMQ is back,
the relay drains the outbox, the projector switches back to `broker` and ignores what it already applied.

This experiment STOPS the broker the system uses and starts it again after --outage-seconds: natively the
RabbitMQ application (`rabbitmqctl stop_app`, `start_app`), under Compose (LAB_SYSTEM=compose) the rabbitmq
container (`docker compose stop rabbitmq`, `start rabbitmq`). Every client of that broker is cut off
meanwhile.
"""

from __future__ import annotations

import argparse
import os
import time
from decimal import Decimal
from uuid import UUID

from devkit.polling import poll
from lab._support import PIPELINE, Client, Lab, Report

ALLOW_VARIABLE = "LAB_ALLOW_BROKER_STOP"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="broker-outage", description=__doc__)
    parser.add_argument("--yes", action="store_true", help=f"really stop the broker (or {ALLOW_VARIABLE}=1)")
    parser.add_argument("--outage-seconds", type=float, default=10.0, help="time it stays down (default 10)")
    parser.add_argument("--interval", type=float, default=0.25, help="between commands (default 0.25 s)")
    args = parser.parse_args(argv)

    lab = Lab.from_env()
    control = lab.broker_control()
    if not (args.yes or os.environ.get(ALLOW_VARIABLE) == "1"):
        print(
            f"WARNING: this experiment stops RabbitMQ for {args.outage_seconds:g} s and starts it again:\n"
            f"{control}. Every application using that broker loses it meanwhile.\n"
            f"Run it only on a broker of your own; to go ahead, add --yes (make experiment\n"
            f'NAME=broker-outage ARGS="--yes") or set {ALLOW_VARIABLE}=1.'
        )
        return 2
    lab.require_running()
    report = Report("broker-outage", __doc__)
    print(f"WARNING: stopping RabbitMQ for {args.outage_seconds:g} s: {control}.\n")
    with lab.client() as client:
        return run(lab, report, client, args.outage_seconds, args.interval)


def run(lab: Lab, report: Report, client: Client, outage: float, interval: float) -> int:
    accounts = [client.open_account(f"lab-outage-{i}", deposit="100.00") for i in range(2)]
    for account_id, version in accounts:
        client.read_fresh(account_id, version)
    first_version = {account_id: version for account_id, version in accounts}
    projection = client.projection()
    mode_before = projection["mode"]
    stream = (projection.get("replication") or {}).get("status", "not reported")
    duplicates_before = _duplicates(lab)
    report.step(
        f"Two accounts opened and projected; /api/projection: mode {mode_before!r}, replication {stream!r}."
    )

    report.step("broker stopped")
    lab.stop_broker()
    stopped_at = time.monotonic()
    modes: list[tuple[float, str]] = [(0.0, mode_before)]
    statuses: list[int] = []
    written: dict[UUID, int] = dict(first_version)
    backlog_max = 0
    try:
        report.step(f"For {outage:g} s: a deposit every {interval:g} s, watching mode and the read side.")
        n = 0
        while time.monotonic() - stopped_at < outage:
            account_id = accounts[n % 2][0]
            n += 1
            response = client.command(f"/api/accounts/{account_id}/deposit", {"amount": "1.00"})
            statuses.append(response.status_code)
            if response.status_code == 200:
                written[account_id] = response.json()["version"]
            _note_mode(client, modes, stopped_at)
            backlog_max = max(backlog_max, _backlog(lab))
            time.sleep(interval)
        visible_during = _visible(client, written, first_version)
        mode_during = client.projection()["mode"]
    finally:
        restarted_at = time.monotonic()
        lab.start_broker()
        report.step(f"broker started (returned after {time.monotonic() - restarted_at:.1f} s)")

    converged_after = None
    while time.monotonic() - restarted_at < 60:
        _note_mode(client, modes, stopped_at)
        if converged_after is None and _visible(client, written, first_version) == sum(
            written[a] - first_version[a] for a in written
        ):
            converged_after = time.monotonic() - restarted_at
        if converged_after is not None and modes[-1][1] == "broker" and _backlog(lab) == 0:
            break
        time.sleep(0.2)
    outbox_drained_after = time.monotonic() - restarted_at if _backlog(lab) == 0 else None
    broker_back_after = next(
        (at - (restarted_at - stopped_at) for at, mode in modes[1:] if mode == "broker"), None
    )
    if duplicates_before is not None:  # the outbox's events, already applied, come through RabbitMQ too
        poll(lambda: (_duplicates(lab) or 0) - duplicates_before >= len(statuses), timeout=10, interval=0.1)
    duplicates = None if duplicates_before is None else int((_duplicates(lab) or 0) - duplicates_before)
    by_path = _applied_by_path(lab, written, first_version)
    consistent = _consistent(lab, client, list(written))

    commands = len(statuses)
    accepted = statuses.count(200)
    changes = " -> ".join([f"{mode_before} (before)", *(f"{mode} ({at:.1f} s)" for at, mode in modes[1:])])
    fallback_worked = "replication" in {mode for _, mode in modes} and by_path.get("replication", 0) > 0
    report.observed(
        [
            ("commands during the outage", f"{accepted} of {commands} accepted (200)"),
            ("outbox backlog, most", f"{backlog_max} events waiting for RabbitMQ"),
            ("mode, seconds after the stop", changes),
            (
                "projected during the outage",
                f"{visible_during} of {accepted} commands (mode then: {mode_during})",
            ),
            ("read side caught up", _after_restart(converged_after)),
            ("outbox drained", _after_restart(outbox_drained_after)),
            ("mode back to broker", _after_restart(broker_back_after)),
            ("duplicates via RabbitMQ afterwards", "unknown" if duplicates is None else duplicates),
            ("events applied by path", ", ".join(f"{p}: {c}" for p, c in sorted(by_path.items())) or "none"),
            ("read side equals write side", "yes" if consistent else "NO"),
        ]
    )
    if fallback_worked:
        report.explain(
            "While RabbitMQ was down the projector applied the events it found in the replicated\n"
            "events table, so reads stayed close to the writes. When the relay drained the outbox\n"
            "afterwards, those events arrived a second time through RabbitMQ and were ignored as\n"
            "duplicates. The projector switches back once it has reconnected, which its backoff delays."
        )
    else:
        report.explain(
            "The projection did not switch to the replication path here: the events waited in the\n"
            "outbox (the write side kept accepting commands) and reached the read side through RabbitMQ\n"
            "once it was back. Nothing was lost, but reads were stale for the whole outage. Is the\n"
            "replication stream running? `python -m read_service replication_status` tells."
        )
    report.panels(
        [
            (PIPELINE, "Projection path"),
            (PIPELINE, "Projection path over time"),
            (PIPELINE, "Outbox backlog"),
            (PIPELINE, "Oldest unpublished event age"),
            (PIPELINE, "Events applied per second"),
        ]
    )
    report.result(
        {
            "accounts": {str(a): v for a, v in written.items()},
            "first_versions": {str(a): v for a, v in first_version.items()},
            "commands": commands,
            "accepted": accepted,
            "backlog_max": backlog_max,
            "modes": [mode for _, mode in modes],
            "projected_during_outage": visible_during,
            "caught_up_seconds": None if converged_after is None else round(converged_after, 2),
            "applied_by_path": by_path,
            "fallback_used": fallback_worked,
            "replication_before": stream,
            "broker_duplicates": duplicates,
            "consistent": consistent,
        }
    )
    return 0 if accepted == commands and consistent else 1


def _after_restart(seconds: float | None) -> str:
    return "NOT within 60 s" if seconds is None else f"{seconds:.1f} s after the start was issued"


def _note_mode(client: Client, modes: list[tuple[float, str]], since: float) -> None:
    mode = client.projection()["mode"]
    if mode != modes[-1][1]:
        modes.append((time.monotonic() - since, mode))


def _duplicates(lab: Lab) -> float | None:
    return lab.metric(lab.projector_metrics, "cqrs_events_duplicate_total", path="broker")


def _backlog(lab: Lab) -> int:
    return lab.write_rows("SELECT count(*) FROM outbox_unpublished")[0][0]


def _visible(client: Client, written: dict[UUID, int], first: dict[UUID, int]) -> int:
    """How many of the commands sent since `first` the read side shows now (without waiting)."""
    shown = 0
    for account_id, version in written.items():
        response = client.read_account(account_id)
        read_version = response.json()["version"] if response.status_code == 200 else 0
        shown += max(0, min(read_version, version) - first[account_id])
    return shown


def _applied_by_path(lab: Lab, written: dict[UUID, int], first: dict[UUID, int]) -> dict[str, int]:
    """Which path applied the events of the commands sent during the outage."""
    counts: dict[str, int] = {}
    for account_id, version in written.items():
        for path, count in lab.read_rows(
            "SELECT path, count(*) FROM applied_events WHERE aggregate_id = %s AND version > %s"
            " AND version <= %s GROUP BY path",
            [str(account_id), first[account_id], version],
        ):
            counts[path] = counts.get(path, 0) + count
    return counts


def _consistent(lab: Lab, client: Client, accounts: list[UUID]) -> bool:
    for account_id in accounts:
        ((balance, version),) = lab.write_rows(
            "SELECT balance, version FROM accounts WHERE id = %s", [str(account_id)]
        )
        read = client.read_account(account_id).json()
        if Decimal(read["balance"]) != balance or read["version"] != version:
            return False
    return True
